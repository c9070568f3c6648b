"""/docker outdated [REPO[:TAG]] | schedule "CRON" [--channel C…] [--tz ZONE] | list | cancel|pause|resume ID

Without a subcommand (viewers): which local tags differ from the digest their registry has for the
tag now, on this host or, with `--host all`, the fleet (one registry request per distinct
repository:tag). Each outdated image gets a Pull button (operators) that pulls it on the hosts
whose copy is behind. `schedule` (admins): a standing check that posts only when the set of
outdated images changed since its last post (bot/jobs/outdated.py).

One flat parser, as `report`: the first word is a subcommand or an image.
"""

from __future__ import annotations

from bot.core.channels import channel_text, member_hint
from bot.core.commands import ActionRequest, ArgParser, Command, Reply, Request, UsageError, UserError
from bot.core.confirmations import may_press
from bot.engine.reference import InvalidReference, Reference, parse_reference
from bot.jobs.outdated import PULL_ACTION, check, result_message, run_scheduled_outdated
from bot.jobs.scheduler import DEFAULT_TZ, Schedule
from bot.render.messages import Message, context, plain, section
from handlers import schedules
from handlers.pull import pull

SUBCOMMANDS = ("schedule", "list", "cancel", "pause", "resume")
ADMIN_ONLY = {"schedule", "cancel", "pause", "resume"}


def add_arguments(parser: ArgParser) -> None:
    parser.add_argument(
        "target",
        nargs="?",
        metavar="REPO[:TAG]|schedule|list|cancel|pause|resume",
        help="an image to check (default: every tag), or a subcommand",
    )
    parser.add_argument(
        "arg", nargs="?", metavar="CRON|ID", help='with schedule: "MIN HOUR DAY MONTH WEEKDAY"; else an ID'
    )
    parser.add_argument("--channel", help="with schedule: where to post (a channel ID); default: here")
    parser.add_argument(
        "--tz", help=f"with schedule: the time zone of CRON, e.g. Europe/Berlin (default {DEFAULT_TZ})"
    )


def _action(args: object) -> str:
    target = getattr(args, "target", None)
    return target if target in SUBCOMMANDS else "check"


def required_role(args: object) -> str:
    return "admin" if _action(args) in ADMIN_ONLY else "viewer"


def wanted_image(text: str | None) -> Reference | None:
    """REPO or REPO:TAG as typed; a digest names no tag to compare."""
    if not text:
        return None
    ref = parse_reference(text.strip())
    if ref.digest:
        raise UsageError(
            "a digest names one image, not a tag that can move: give REPO or REPO:TAG, e.g. `ubuntu:24.04`"
        )
    return ref


def run(req: Request, reply: Reply) -> None:
    args = req.args
    action = _action(args)
    if action == "check":
        if args.arg or args.channel or args.tz:
            raise UsageError("say one image at most; --channel and --tz go with `schedule`")
        try:
            wanted = wanted_image(args.target)
        except InvalidReference as error:
            raise UsageError(str(error)) from None
        hosts = req.services.hosts.select(req.host_spec) if req.host_spec else [req.host]
        reply.send(result_message(check(req.services, hosts, wanted), wanted))
        return
    if action == "schedule":
        schedule(req, reply)
        return
    if args.channel or args.tz:
        raise UsageError(f"`outdated {action}` takes no --channel or --tz (those go with `schedule`)")
    if action == "list":
        if args.arg:
            raise UsageError("`outdated list` takes no argument")
        schedules.list_schedules(req, reply, "outdated")
        return
    schedules.change_schedule(req, reply, "outdated", action, args.arg)


# --------------------------------------------------------------------------------------------- buttons


def on_pull_button(req: ActionRequest, reply: Reply) -> None:
    """Pull the tag on each host the card said was behind; each host needs the operator role now."""
    ref, *hosts = req.value.split("\t")
    for name in hosts or [req.host.name]:
        try:
            host = req.services.hosts.get(name)
        except UserError:
            reply.private(plain(f"Host `{name}` is no longer configured; nothing was pulled there."))
            continue
        if not may_press(req, reply, "operator", host.name, "outdated.pull.refused"):
            continue
        try:
            pull(ref.strip(), host, req.services, reply, user=req.user)
        except UserError as error:  # e.g. too many pulls waiting: said, and the next host still pulls
            reply.private(plain(f"Host `{host.name}`: {error}"))


# --------------------------------------------------------------------------------------------- schedules


def schedule(req: Request, reply: Reply) -> None:
    reply.send(scheduled_message(schedules.add_schedule(req, "outdated", req.args.arg)))


def scheduled_message(made: Schedule) -> Message:
    text = (
        f"Outdated-image check scheduled as `{made.id}`: `{made.cron}` ({made.timezone}) for host "
        f"`{made.host}`. It posts to {channel_text(made.channel)} only when the set of outdated "
        "images changes (new, updated, or no longer outdated)." + member_hint(made.channel)
    )
    return Message(
        text=text,
        blocks=[
            section(text),
            context(f"Next run: {schedules.when(made)} · `/docker outdated` shows the list now"),
        ],
        in_channel=True,
    )


COMMAND = Command(
    name="outdated",
    summary="Local images behind their tag upstream (registry digest differs), now or on a schedule.",
    example="/docker outdated --host all",
    run=run,
    add_arguments=add_arguments,
    actions={PULL_ACTION: on_pull_button},
    required_role=required_role,
    # One check over the fleet (one registry request per distinct tag), not one per host.
    spans_hosts=lambda args: True,
    scheduled_fleet=run_scheduled_outdated,
)
