"""/docker report now | schedule "CRON" [--channel #ch] [--tz ZONE] | list | cancel|pause|resume ID:
the disk-usage report.

`now` is for everyone and posts to the channel. `schedule` (admins) stores a standing instruction
with the bot's scheduler, which runs `run_scheduled_report` on the host and posts the result.

One flat parser instead of argparse subparsers: with `exit_on_error=False`, an unknown subcommand
escapes argparse as ArgumentError rather than our UsageError, so the choice is checked in `run`.
"""

from __future__ import annotations

import functools

from bot.core.channels import channel_text, member_hint
from bot.core.commands import ArgParser, Command, Reply, Request, UsageError
from bot.jobs.report import build_report, run_scheduled_report
from bot.jobs.scheduler import DEFAULT_TZ, Schedule
from bot.render.messages import Message, section
from handlers import schedules

ACTIONS = ("now", "schedule", "list", *schedules.CHANGES)
ADMIN_ONLY = {"schedule", *schedules.CHANGES}


def add_arguments(parser: ArgParser) -> None:
    parser.add_argument(
        "action",
        nargs="?",
        default="now",
        choices=ACTIONS,
        help="now: post the report here (the default); schedule: post it on a cron schedule (admins);"
        " list the schedules; cancel, pause or resume one (admins)",
    )
    parser.add_argument(
        "cron",
        nargs="?",
        metavar="CRON|ID",
        help='with schedule: "MIN HOUR DAY MONTH WEEKDAY"; else a schedule ID',
    )
    parser.add_argument("--channel", help="with schedule: a channel ID (C0123ABCD) to post to; default: here")
    parser.add_argument(
        "--tz", help=f"with schedule: the time zone of CRON, e.g. Europe/Berlin (default {DEFAULT_TZ})"
    )


def run(req: Request, reply: Reply) -> None:
    args = req.args
    if args.action == "now":
        if args.cron or args.channel or args.tz:
            raise UsageError(
                "`report now` takes no CRON, --channel or --tz (those go with `report schedule`)"
            )
        reply.send(build_report(req.services, req.host, chart=not req.in_fleet))
        return
    if args.action == "schedule":
        schedule(req, reply)
        return
    if args.channel or args.tz:
        raise UsageError(
            f"`report {args.action}` takes no --channel or --tz (those go with `report schedule`)"
        )
    if args.action == "list":
        if args.cron:
            raise UsageError("`report list` takes no argument")
        schedules.list_schedules(req, reply, "report")
        return
    schedules.change_schedule(req, reply, "report", args.action, args.cron)


def schedule(req: Request, reply: Reply) -> None:
    reply.send(scheduled_message(schedules.add_schedule(req, "report", req.args.cron)))


def scheduled_message(made: Schedule) -> Message:
    nxt = schedules.when(made)
    text = (
        f"Disk-usage report scheduled as `{made.id}`: `{made.cron}` ({made.timezone}) for host "
        f"`{made.host}`, posted to {channel_text(made.channel)}. Next run: {nxt}."
    ) + member_hint(made.channel)
    return Message(text=text, blocks=[section(text)], in_channel=True)


COMMAND = Command(
    name="report",
    summary="Disk-usage report with a chart, now or on a schedule.",
    example="/docker report now",
    run=run,
    add_arguments=add_arguments,
    required_role=lambda args: "admin" if args.action in ADMIN_ONLY else "viewer",
    fleet=lambda args: args.action == "now",
    spans_hosts=lambda args: args.action == "schedule",
    scheduled=run_scheduled_report,
    scheduled_in_fleet=functools.partial(run_scheduled_report, chart=False),
)
