"""The exceptions every layer may raise for the user to read (a leaf: it imports nothing)."""


class UserError(Exception):
    """A problem the user can fix; its text is shown as it is."""


class UsageError(UserError):
    """Bad arguments: the reply adds the command's usage."""


class Refused(UserError):
    """The asker lacks the role on a host: told privately (already audited), nothing done."""
