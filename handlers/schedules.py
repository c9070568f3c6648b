"""`list`, `cancel`, `pause` and `resume` of schedules, shared by `/docker cleanup`, `/docker report`
and `/docker outdated`.

Not a subcommand of its own: each command manages its own kind of schedule, and a schedule ID of
the other kind gets a reply naming the command that does work for it.
"""

from __future__ import annotations

from typing import Any

from bot.core.channels import parse_channel
from bot.core.commands import Reply, Request, UsageError, UserError, hosts_of, require_role
from bot.jobs.cleanup_report import folded
from bot.jobs.scheduler import DEFAULT_TZ, Schedule, running_scheduler
from bot.render.formatting import ellipsis, format_table, in_zone
from bot.render.messages import Message, plain

CHANGES = ("cancel", "pause", "resume")
_EXAMPLES = {
    "cleanup": '`/docker cleanup schedule "0 3 * * *"`',
    "report": '`/docker report schedule "0 8 * * 1"`',
    "outdated": '`/docker outdated schedule "0 8 * * 1"`',
}


def when(schedule: Schedule) -> str:
    """The next run in the schedule's own zone, as every schedule reply and App Home show it."""
    return in_zone(schedule.next_run, schedule.timezone) if schedule.next_run else "never (paused)"


def list_schedules(req: Request, reply: Reply, kind: str) -> None:
    # Only schedules on hosts the asker has a role on (every host of a fleet schedule).
    access = req.services.access

    def readable(spec: str) -> bool:
        names = hosts_of(req.services, spec)
        return all(access.role(req.user, req.channel, name, local=req.local) for name in names)

    schedules = [s for s in running_scheduler(req.services).list(kind) if readable(s.host)]
    if not schedules:
        reply.send(plain(f"No {kind} schedules. An admin can add one: {_EXAMPLES[kind]}."))
        return
    rows = [
        [
            s.id,
            s.cron,
            s.timezone,
            s.channel,
            s.host,
            *([ellipsis(s.params.get("policy") or "(default)", 40)] if kind == "cleanup" else []),
            "paused" if s.paused else "active",
            when(s) if not s.paused else "-",
            s.created_by,
        ]
        for s in schedules
    ]
    headers = ["ID", "CRON", "TZ", "CHANNEL", "HOST", *(["POLICY"] if kind == "cleanup" else [])]
    table = format_table([*headers, "STATE", "NEXT RUN", "BY"], rows)
    title = f"{kind.capitalize()} schedules"
    reply.send(
        Message(
            text=f"{len(schedules)} {kind} schedules",
            blocks=folded(f"*{title} ({len(rows)})*", table, len(rows)),
        )
    )


def change_schedule(req: Request, reply: Reply, kind: str, action: str, schedule_id: str | None) -> None:
    if not schedule_id:
        raise UsageError(f"`{kind} {action}` needs a schedule ID (`/docker {kind} list` shows them)")
    scheduler = running_scheduler(req.services)
    existing = scheduler.get(schedule_id)
    if existing.kind != kind:
        raise UserError(
            f"`{schedule_id}` is a {existing.kind} schedule; use `/docker {existing.kind} {action}`."
        )
    # Admin on the hosts the schedule runs on, not (only) on the host the command was typed for.
    require_role(req, "admin", hosts_of(req.services, existing.host), f"/docker {kind} {action}")
    changed = getattr(scheduler, action)(schedule_id)
    req.services.store.audit(
        user=req.user,
        channel=req.channel,
        host=changed.host,
        action=f"{kind}.{action}",
        result=f"schedule {changed.id}: {changed.cron} ({changed.timezone})",
        request_id=req.request_id,
    )
    done = {"cancel": "Cancelled", "pause": "Paused", "resume": "Resumed"}[action]
    after = f" Next run: {when(changed)}." if action == "resume" else ""
    reply.send(
        plain(
            f"{done} {kind} schedule `{changed.id}` (`{changed.cron}`, {changed.timezone}) "
            f"on {changed.host}.{after}"
        )
    )


def add_schedule(
    req: Request, kind: str, cron: str | None, *, params: dict[str, Any] | None = None
) -> Schedule:
    """`KIND schedule "CRON" [--channel] [--tz]` on the request's host (or `--host` as typed),
    audited; the scheduler refuses a bad cron line, zone or host."""
    cron = (cron or "").strip()
    if not cron:
        raise UsageError(f'`{kind} schedule` needs a cron expression in quotes, e.g. "0 8 * * 1"')
    channel = parse_channel(req.args.channel) if req.args.channel else req.channel
    timezone = req.args.tz or DEFAULT_TZ
    made = running_scheduler(req.services).add(
        kind,
        cron,
        timezone=timezone,
        channel=channel,
        host=req.host_spec or req.host.name,
        params=params or {},
        created_by=req.user,
    )
    req.services.store.audit(
        user=req.user,
        channel=req.channel,
        host=req.host.name,
        action=f"{kind}.schedule",
        result=f"scheduled {made.id}: {cron} ({timezone}) to {channel}",
        request_id=req.request_id,
    )
    return made
