"""Who may do what, on which host: viewer < operator < admin.

Roles are granted to Slack user IDs (U…/W…), user-group IDs (S…) and channel IDs (C…/G…/D…),
everywhere or per host, in the bot's config (and DOCKERBOT_ADMINS / DOCKERBOT_OPERATORS for
the simple case). Deny by default: with no configuration a Slack user has no role at all
(`default_role: viewer` is a choice an admin writes down); the terminal user already holds the
engine, so they are an admin. Lookups never touch the network: user-group members come from a
cache refreshed in the background.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

log = logging.getLogger("dockerbot.access")

ROLES = ("viewer", "operator", "admin")
EVERYONE = "*"


def rank(role: str | None) -> int:
    return ROLES.index(role) + 1 if role in ROLES else 0


@dataclass
class Grants:
    """role -> the principals holding it (user, user-group or channel IDs, or "*")."""

    by_role: dict[str, set[str]] = field(default_factory=dict)

    def role_of(self, principals: set[str]) -> str | None:
        best: str | None = None
        for role, holders in self.by_role.items():
            if (EVERYONE in holders or holders & principals) and rank(role) > rank(best):
                best = role
        return best

    def groups(self) -> set[str]:
        return {p for holders in self.by_role.values() for p in holders if p.startswith("S")}

    def holders(self, role: str) -> set[str]:
        return self.by_role.get(role, set())


@dataclass
class AccessPolicy:
    everywhere: Grants = field(default_factory=Grants)
    per_host: dict[str, Grants] = field(default_factory=dict)
    channels: set[str] = field(default_factory=set)  # allowlist; empty = every channel
    default_role: str | None = None  # what everyone gets when nothing else says: nothing

    @classmethod
    def from_config(
        cls,
        raw: dict | None,
        *,
        admins: Iterable[str] = (),
        operators: Iterable[str] = (),
        channels: Iterable[str] = (),
        default_role: str = "none",
    ) -> AccessPolicy:
        raw = raw or {}
        policy = cls(
            everywhere=_grants(raw.get("roles") or {}),
            per_host={host: _grants(roles or {}) for host, roles in (raw.get("hosts") or {}).items()},
            channels=set(raw.get("channels") or []) | set(channels),
            default_role=raw.get("default_role", default_role),
        )
        if policy.default_role not in (*ROLES, None, "none"):
            raise ValueError(f"access.default_role must be one of {', '.join(ROLES)} or none")
        if policy.default_role == "none":
            policy.default_role = None
        policy.everywhere.by_role.setdefault("admin", set()).update(admins)
        policy.everywhere.by_role.setdefault("operator", set()).update(operators)
        return policy


def _grants(raw: dict) -> Grants:
    unknown = set(raw) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown role(s) {', '.join(sorted(unknown))}; roles are {', '.join(ROLES)}")
    return Grants({role: {str(p) for p in (holders or [])} for role, holders in raw.items()})


class UserGroups:
    """User-group members, refreshed in the background so the ack path never waits for Slack."""

    def __init__(
        self, groups: set[str], fetch: Callable[[str], list[str]] | None, every: float = 300
    ) -> None:
        self.groups = groups
        self.fetch = fetch
        self.every = every
        self._members: dict[str, set[str]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def of(self, user: str) -> set[str]:
        return {group for group, members in self._members.items() if user in members}

    def of_now(self, user: str, groups: set[str]) -> set[str]:
        """Which of `groups` the user is in, read from Slack now (and kept in the cache). A group
        that cannot be read now counts as not held: a destructive step fails closed."""
        if self.fetch is None:
            return self.of(user) & groups
        held: set[str] = set()
        for group in groups & self.groups:
            try:
                members = set(self.fetch(group))
            except Exception as error:  # noqa: BLE001 - the group does not count, the user is told why
                log.warning("could not read user group %s now: %s", group, error)
                continue
            self._members[group] = members
            if user in members:
                held.add(group)
        return held

    def refresh(self) -> None:
        if self.fetch is None:
            return
        for group in self.groups:
            try:
                self._members[group] = set(self.fetch(group))
            except Exception as error:  # noqa: BLE001 - keep the last known members
                log.warning("could not refresh user group %s: %s", group, error)

    def start(self) -> None:
        if not self.groups or self.fetch is None or self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.is_set():
                self.refresh()
                self._stop.wait(self.every)

        self._thread = threading.Thread(target=loop, name="usergroups", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()


class Access:
    def __init__(self, policy: AccessPolicy, groups: UserGroups | None = None) -> None:
        self.policy = policy
        all_groups = policy.everywhere.groups().union(*(g.groups() for g in policy.per_host.values()))
        self.groups = groups or UserGroups(all_groups, None)

    def role(
        self, user: str, channel: str, host: str, *, local: bool = False, fresh: bool = False
    ) -> str | None:
        """The user's role on `host` when asking from `channel`; None: no access at all. `fresh`:
        user-group membership is read from Slack now, not from the cache (a destructive step)."""
        if local:
            return "admin"
        if fresh:
            groups = self.policy.everywhere.groups()
            if host in self.policy.per_host:
                groups |= self.policy.per_host[host].groups()
            members_of = self.groups.of_now(user, groups) if groups else set()
        else:
            members_of = self.groups.of(user)
        principals = {user, channel, *members_of}
        roles = [self.policy.everywhere.role_of(principals), self.policy.default_role]
        if host in self.policy.per_host:
            roles.append(self.policy.per_host[host].role_of(principals))
        return max(roles, key=rank)

    def channel_allowed(self, channel: str, *, local: bool = False) -> bool:
        return local or not self.policy.channels or channel in self.policy.channels

    def granters(self, host: str) -> list[str]:
        """Who can grant roles: the admins for this host (users only; groups and channels are not people)."""
        holders = set(self.policy.everywhere.holders("admin"))
        if host in self.policy.per_host:
            holders |= self.policy.per_host[host].holders("admin")
        return sorted(h for h in holders if h[:1] in ("U", "W"))
