"""The App Home tab: each host's state, the next scheduled runs, the last cleanup summary.

Published with views.publish on `app_home_opened`; a Home view holds at most 100 blocks, so
the host list is a table split over a few sections, however many hosts there are.
"""

from __future__ import annotations

import time
from typing import Any

from bot.core.services import Services
from bot.engine.hostinfo import hosts_table
from bot.render.messages import Block, code_blocks, context, divider, header, section

MAX_HOME_BLOCKS = 100
HOME_HOST_TIMEOUT = 5.0  # the tab must open quickly even when hosts are down


def home_blocks(services: Services, user: str) -> list[Block]:
    table, up, total = hosts_table(services.hosts, min(HOME_HOST_TIMEOUT, services.settings.host_timeout))
    blocks: list[Block] = [
        header("dockerbot"),
        section(f"*Hosts* — {up} of {total} up"),
        *code_blocks(table)[:60],
        divider(),
        section("*Next scheduled runs*\n" + _next_runs(services)),
        divider(),
        section("*Last cleanup*\n" + _last_cleanup(services)),
    ]
    role = services.access.role(user, "", services.hosts.default.name)
    blocks.append(context(f"Your role on `{services.hosts.default.name}`: {role or 'none'} · `/docker help`"))
    return blocks[:MAX_HOME_BLOCKS]


def _next_runs(services: Services) -> str:
    scheduler = services.scheduler
    if scheduler is None:
        return "Scheduling is not running."
    schedules = [s for s in scheduler.list() if s.next_run is not None]
    if not schedules:
        return "Nothing is scheduled. `/docker cleanup schedule` and `/docker report schedule` add runs."
    schedules.sort(key=lambda s: s.next_run)  # type: ignore[arg-type,return-value]
    lines = [
        f"• {s.next_run:%Y-%m-%d %H:%M} UTC — {s.kind} on `{s.host}` (`{s.id}`, `{s.cron}` {s.timezone})"  # type: ignore[str-format]
        for s in schedules[:10]
    ]
    more = f"\n…and {len(schedules) - 10} more (`/docker cleanup list`)" if len(schedules) > 10 else ""
    return "\n".join(lines)[:2800] + more


def _last_cleanup(services: Services) -> str:
    scheduler = services.scheduler
    last: dict[str, Any] | None = scheduler.last_run("cleanup") if scheduler is not None else None
    if last is None:
        return "No scheduled cleanup has run yet."
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(last["finished_at"]))
    return f"{when} on `{last['host']}` ({last['state']}): {last['summary'] or ''}"[:2900]


def publish_home(client: Any, services: Services, user: str) -> None:
    client.views_publish(user_id=user, view={"type": "home", "blocks": home_blocks(services, user)})
