"""The contract between the router, the adapters and the handlers.

A handler is a plain function `run(request, reply)`. It reads what the user asked
from `request`, talks to the Docker host in `request.host`, and answers through
`reply`. Adapters (Slack, terminal) implement `Reply`; handlers never see them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from bot.core.access import rank
from bot.errors import Refused, UsageError, UserError
from bot.render.messages import Message, mention

__all__ = ["Refused", "UsageError", "UserError"]  # handlers take the whole contract from here

if TYPE_CHECKING:
    from bot.core.services import Services
    from bot.engine.hosts import DockerHost
    from bot.jobs.scheduler import Schedule


class MessageRef(Protocol):
    """Where an adapter can find a message again to update it. Opaque to handlers."""


class Reply(Protocol):
    def send(self, message: Message, *, live: bool = False) -> MessageRef:
        """Post a new message. `live=True` asks for a message that `update` can edit often."""

    def update(self, ref: MessageRef, message: Message, *, final: bool = False) -> None:
        """Replace a message posted earlier (or the one whose button was pressed)."""

    def private(self, message: Message) -> None:
        """Tell only the person who asked (refusals, notices)."""

    # Optional, for live messages: `update_interval` (seconds between updates; Slack's rate limit
    # is about one per second) and `rate_limited` (whether the final update must keep that pace).


@dataclass(frozen=True)
class Request:
    user: str
    channel: str
    args: argparse.Namespace
    host: DockerHost
    services: Services
    request_id: str
    role: str | None = "viewer"  # the asker's role on `host` (bot/core/access.py)
    local: bool = False  # typed in the terminal by someone who already holds the engine
    host_spec: str | None = None  # `--host` as typed (`all`, `a,b`), for commands that keep it (schedules)
    # One host of a `--host all` reply, which shows each host's blocks and drops its files: work
    # done only for a file (a chart) can be skipped.
    in_fleet: bool = False

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class ActionRequest:
    """A button press: `value` is what the button carried, `message` the card it sits on."""

    user: str
    channel: str
    value: str
    message: MessageRef
    host: DockerHost
    services: Services
    request_id: str
    local: bool = False

    def role_on(self, host: str, *, fresh: bool = False) -> str | None:
        """The presser's role on `host` now: checked again at every press, so a revoked role wins.
        `fresh`: the user groups that grant roles are read from Slack now (Confirm)."""
        return self.services.access.role(self.user, self.channel, host, local=self.local, fresh=fresh)


class ArgParser(argparse.ArgumentParser):
    """argparse that raises instead of printing and exiting."""

    def __init__(self, prog: str, **kwargs: Any) -> None:
        super().__init__(prog=prog, add_help=False, allow_abbrev=False, exit_on_error=False, **kwargs)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:  # type: ignore[override]
        # With exit_on_error=False, a bad `type=`/`choices=` value raises ArgumentError instead of error().
        try:
            return super().parse_known_args(args, namespace)
        except argparse.ArgumentError as error:
            raise UsageError(str(error)) from None

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        raise UsageError(message or "invalid arguments")


Runner = Callable[[Request, Reply], None]
ActionRunner = Callable[[ActionRequest, Reply], None]
# What one scheduled run of a command does on one host: the message the schedule posts.
ScheduledRunner = Callable[["Services", "DockerHost", dict[str, Any]], Message]
# What one scheduled run does for all of the schedule's hosts at once: one message, or None when
# there is nothing to post (`outdated schedule` speaks only when something changed).
FleetScheduledRunner = Callable[["Services", list["DockerHost"], "Schedule"], "Message | None"]


@dataclass(frozen=True)
class Command:
    name: str
    summary: str  # one line for /docker help
    example: str  # e.g. "/docker pull redis:7"
    run: Runner
    add_arguments: Callable[[ArgParser], None] = lambda parser: None
    aliases: tuple[str, ...] = ()
    actions: dict[str, ActionRunner] = field(default_factory=dict)  # button action name -> runner
    # The least role that may run it, and the role a given invocation needs (subcommands differ).
    role: str = "viewer"
    required_role: Callable[[argparse.Namespace], str] | None = None
    # Whether this invocation may run on several hosts at once (`--host all`): reads only.
    fleet: Callable[[argparse.Namespace], bool] = lambda args: False
    # Whether this invocation takes several hosts as one target (a schedule over `--host all`).
    spans_hosts: Callable[[argparse.Namespace], bool] = lambda args: False
    # What a schedule of this command runs on each host (`cleanup schedule`, `report schedule`).
    scheduled: ScheduledRunner | None = None
    # Instead of `scheduled`: one run over all the schedule's hosts together (`outdated schedule`).
    scheduled_fleet: FleetScheduledRunner | None = None
    # One host's part of a schedule over several hosts, when it differs from `scheduled`: the fleet
    # summary keeps each host's text only (a report leaves out the chart it would drop).
    scheduled_in_fleet: ScheduledRunner | None = None

    def role_for(self, args: argparse.Namespace) -> str:
        return self.required_role(args) if self.required_role else self.role

    def parser(self) -> ArgParser:
        parser = ArgParser(prog=f"/docker {self.name}")
        self.add_arguments(parser)
        return parser

    @property
    def usage(self) -> str:
        # argparse wraps long usage lines; a chat reply reads better on one line.
        return " ".join(self.parser().format_usage().removeprefix("usage: ").split())


def hosts_of(services: Services, spec: str) -> list[str]:
    """The host names an object names (a schedule's `all`, `a,b` or one name)."""
    if spec == "all":
        return list(services.hosts.names)
    return [name.strip() for name in spec.split(",") if name.strip()] or [spec]


def refusal(services: Services, what: str, needed: str, role: str | None, host: str) -> str:
    granters = services.access.granters(host)
    mentions = ", ".join(mention(g) for g in granters)
    who = (
        f"Ask an admin ({mentions}) to grant it in the bot's config."
        if granters
        else "Roles are granted in the bot's config: `DOCKERBOT_ADMINS`, `DOCKERBOT_OPERATORS`, "
        "or `access:` in `DOCKERBOT_CONFIG`."
    )
    have = f"you are {role} there" if role else "you have no role there"
    return f"`{what}` needs the *{needed}* role on host `{host}`; {have}. {who}"


def require_role(req: Request | ActionRequest, needed: str, hosts: Iterable[str], what: str) -> None:
    """Refuse (audited, privately) unless the asker holds `needed` on every one of `hosts`: the hosts
    the object acted on belongs to, which need not be the host the command was typed for."""
    for host in hosts:
        fresh = rank(needed) >= rank("admin")  # user groups read from Slack now, not the cache
        role = req.services.access.role(req.user, req.channel, host, local=req.local, fresh=fresh)
        if rank(role) < rank(needed):
            req.services.store.audit(
                user=req.user,
                channel=req.channel,
                host=host,
                action=f"{what.removeprefix('/docker ').split()[0]}.refused",
                result=f"needs {needed}, has {role or 'none'}",
                request_id=req.request_id,
            )
            raise Refused(refusal(req.services, what, needed, role, host))
