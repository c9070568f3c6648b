"""The App Home tab: each host's state, the next scheduled runs, the last cleanup summary, each only
for the hosts where the user has a role (and, for a user with none, how to get one).

Published with views.publish on `app_home_opened`; a Home view holds at most 100 blocks, so
the host list is a table split over a few sections, however many hosts there are.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bot.core.commands import hosts_of
from bot.core.services import Services
from bot.engine.hostinfo import hosts_table
from bot.render.formatting import in_zone
from bot.render.messages import Block, code_blocks, context, divider, header, mention, section

MAX_HOME_BLOCKS = 100
HOME_HOST_TIMEOUT = 5.0  # the tab must open quickly even when hosts are down


def home_blocks(services: Services, user: str) -> list[Block]:
    """What the user's roles let them read: the hosts they have a role on, the schedules and the last
    cleanup there; with no role anywhere, only how to get one."""
    roles = {name: services.access.role(user, "", name) for name in services.hosts.names}
    readable = {name for name, role in roles.items() if role}
    if not readable:
        return [header("dockerbot"), section(_how_to_get_a_role(services))]

    def visible(spec: str) -> bool:
        return all(name in readable for name in hosts_of(services, spec or "all"))

    timeout = min(HOME_HOST_TIMEOUT, services.settings.host_timeout)
    table, up, total = hosts_table(services.hosts, timeout, only=readable)
    blocks: list[Block] = [
        header("dockerbot"),
        section(f"*Hosts* — {up} of {total} up"),
        *code_blocks(table)[:60],
        divider(),
        section("*Next scheduled runs*\n" + _next_runs(services, visible)),
        divider(),
        section("*Last cleanup*\n" + _last_cleanup(services, visible)),
    ]
    mine = ", ".join(f"`{name}`: {roles[name]}" for name in services.hosts.names if name in readable)
    blocks.append(context(f"Your roles: {mine}"[:1900] + " · `/docker help`"))
    return blocks[:MAX_HOME_BLOCKS]


def _how_to_get_a_role(services: Services) -> str:
    granters = services.access.granters(services.hosts.default.name)
    ask = (
        f"Ask an admin ({', '.join(mention(g) for g in granters)}) to grant you one."
        if granters
        else (
            "Ask whoever runs the bot to grant you one: roles are set in its config "
            "(`DOCKERBOT_DEFAULT_ROLE`, `DOCKERBOT_ADMINS`, `DOCKERBOT_OPERATORS`, or `access:` in "
            "`DOCKERBOT_CONFIG`)."
        )
    )
    return f"You have no role in dockerbot yet, so there is nothing to show here. {ask}"


def _next_runs(services: Services, visible: Callable[[str], bool]) -> str:
    scheduler = services.scheduler
    if scheduler is None:
        return "Scheduling is not running."
    schedules = [s for s in scheduler.list() if s.next_run is not None and visible(s.host)]
    if not schedules:
        return "Nothing is scheduled. `/docker cleanup schedule` and `/docker report schedule` add runs."
    schedules.sort(key=lambda s: s.next_run)  # type: ignore[arg-type,return-value]
    lines = [
        f"• {in_zone(s.next_run, s.timezone)} — {s.kind} on `{s.host}` (`{s.id}`, `{s.cron}` {s.timezone})"  # type: ignore[arg-type]
        for s in schedules[:10]
    ]
    more = f"\n…and {len(schedules) - 10} more (`/docker cleanup list`)" if len(schedules) > 10 else ""
    return "\n".join(lines)[:2800] + more


def _last_cleanup(services: Services, visible: Callable[[str], bool]) -> str:
    scheduler = services.scheduler
    last: dict[str, Any] | None = scheduler.last_run("cleanup", visible) if scheduler is not None else None
    if last is None:
        return "No scheduled cleanup has run yet."
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(last["finished_at"]))
    return f"{when} on `{last['host']}` ({last['state']}): {last['summary'] or ''}"[:2900]


def publish_home(client: Any, services: Services, user: str) -> None:
    client.views_publish(user_id=user, view={"type": "home", "blocks": home_blocks(services, user)})
