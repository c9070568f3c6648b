"""/docker cleanup preview|now|schedule|list|cancel|pause|resume: image cleanup by policy.

`preview` is a dry run. `now` posts the same preview as a confirmation card (the checks rmi's
card has: bound to the requester, channel and host, single use, expiring) and removes exactly
the previewed images on Confirm. A schedule is a standing instruction created by an admin: its
runs need no confirmation and post one summary each to the schedule's channel.
"""

from __future__ import annotations

import argparse

from bot.core import confirmations
from bot.core.channels import channel_text, member_hint, parse_channel
from bot.core.commands import ActionRequest, ArgParser, Command, Reply, Request, UsageError
from bot.jobs.cleanup import execute_plan, plan_now, run_scheduled_cleanup
from bot.jobs.cleanup_plan import CleanupPlan
from bot.jobs.cleanup_report import preview_message, summary_message
from bot.jobs.policy import Policy, resolve_policy
from bot.jobs.scheduler import DEFAULT_TZ, running_scheduler
from bot.render.formatting import ellipsis
from bot.render.messages import Message, context, mention, section
from handlers import schedules

ACTIONS = ("preview", "now", "schedule", "list", "cancel", "pause", "resume")
ADMIN_ONLY = {"now", "schedule", "cancel", "pause", "resume"}


def add_arguments(parser: ArgParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="{" + ",".join(ACTIONS) + "}")
    policy_help = 'rules, e.g. "unused-since 14d, keep-newest 3, exclude postgres:*", or a policy\'s name'
    for name in ("preview", "now"):
        sub.add_parser(name).add_argument("--policy", help=policy_help)
    schedule = sub.add_parser("schedule")
    schedule.add_argument("cron", nargs="+", metavar="CRON", help='e.g. "0 3 * * *" (quote it)')
    schedule.add_argument("--policy", help=policy_help)
    schedule.add_argument("--channel", help="where summaries go: a channel ID (C0123ABCD); default: here")
    schedule.add_argument(
        "--tz", help=f"time zone of the cron line, e.g. Europe/Berlin (default {DEFAULT_TZ})"
    )
    sub.add_parser("list")
    for name in ("cancel", "pause", "resume"):
        sub.add_parser(name).add_argument("id", metavar="ID")


def required_role(args: argparse.Namespace) -> str:
    """The router refuses (privately, audited) before `run`: removing and standing orders are admin's."""
    return "admin" if args.action in ADMIN_ONLY else "viewer"


def run(req: Request, reply: Reply) -> None:
    action = req.args.action
    if action is None:
        raise UsageError("say what to do: " + ", ".join(ACTIONS))
    {
        "preview": preview,
        "now": now,
        "schedule": schedule,
        "list": lambda req, reply: schedules.list_schedules(req, reply, "cleanup"),
        **{
            change: lambda req, reply: schedules.change_schedule(req, reply, "cleanup", action, req.args.id)
            for change in schedules.CHANGES
        },
    }[action](req, reply)


# --------------------------------------------------------------------------------------------- preview


def _plan(req: Request) -> tuple[Policy, CleanupPlan]:
    policy = resolve_policy(req.args.policy, req.services)
    return policy, plan_now(req.services, req.host, policy)


def preview(req: Request, reply: Reply) -> None:
    policy, plan = _plan(req)
    reply.send(preview_message(plan, policy))


# --------------------------------------------------------------------------------------------- now


def now(req: Request, reply: Reply) -> None:
    policy, plan = _plan(req)
    store = req.services.store
    if not plan.candidates and not policy.build_cache:
        reply.send(preview_message(plan, policy, f"Cleanup on {plan.host}: nothing to do"))
        return
    pending = store.create_pending(
        kind="cleanup",
        user=req.user,
        channel=req.channel,
        host=req.host.name,
        payload={"plan": plan.to_dict(), "build_cache": policy.build_cache},
        ttl=req.services.settings.confirm_ttl,
    )
    store.audit(
        user=req.user,
        channel=req.channel,
        host=req.host.name,
        action="cleanup.preview",
        tags=[],
        result=f"card posted: {len(plan.candidates)} images, policy {policy.text}"[:2000],
        request_id=req.request_id,
    )
    title = f"Run this cleanup on {plan.host}?"
    card = preview_message(plan, policy, title)
    expires = confirmations.expires_text(pending)
    card.blocks.append(
        context(f"Asked by {mention(req.user)} · only they or an admin can confirm · expires {expires}")
    )
    warning = f"This removes {len(plan.candidates)} images from {plan.host}. It cannot be undone."
    card.blocks.append(confirmations.decision_buttons("cleanup", pending, title, warning))
    card.in_channel = True
    reply.send(card)


def on_confirm(req: ActionRequest, reply: Reply) -> None:
    pending = confirmations.decide(req, reply, "cleanup", "running")
    if pending is None:
        return
    host = req.services.hosts.get(pending.host)
    plan = CleanupPlan.from_dict(pending.payload["plan"])
    try:
        result = execute_plan(
            req.services,
            host,
            plan,
            bool(pending.payload.get("build_cache")),
            user=req.user,
            channel=req.channel,
            request_id=req.request_id,
        )
    except Exception as error:
        req.services.store.finish(pending.id, f"failed: {error}")
        raise
    message = summary_message(host.name, result)
    message.blocks.insert(1, context(f"Confirmed by {mention(req.user)}"))
    req.services.store.finish(pending.id, message.text[:2000])
    reply.update(req.message, message)


def on_cancel(req: ActionRequest, reply: Reply) -> None:
    confirmations.cancel(req, reply, "cleanup")


# --------------------------------------------------------------------------------------------- schedules


def schedule(req: Request, reply: Reply) -> None:
    scheduler = running_scheduler(req.services)
    policy = resolve_policy(req.args.policy, req.services)  # a bad policy fails now, not at 03:00
    channel = parse_channel(req.args.channel) if req.args.channel else req.channel
    timezone = req.args.tz or DEFAULT_TZ
    cron = " ".join(req.args.cron)
    made = scheduler.add(
        "cleanup",
        cron,
        timezone=timezone,
        channel=channel,
        host=req.host_spec or req.host.name,
        params={"policy": (req.args.policy or "").strip()},
        created_by=req.user,
    )
    req.services.store.audit(
        user=req.user,
        channel=req.channel,
        host=req.host.name,
        action="cleanup.schedule",
        result=f"schedule {made.id}: {cron} ({timezone}) to {channel}, policy {policy.text}"[:2000],
        request_id=req.request_id,
    )
    reply.send(
        Message(
            text=f"Scheduled cleanup {made.id}",
            blocks=[
                section(
                    f"Scheduled cleanup `{made.id}` on {made.host}: `{cron}` ({timezone}).\n"
                    f"Policy: `{ellipsis(policy.title, 500)}`\n"
                    f"Each run removes without asking and posts one summary to {channel_text(channel)}."
                    + member_hint(channel)
                ),
                context(
                    f"Next run: {schedules.when(made)} · "
                    "`/docker cleanup preview` shows what it would remove now"
                ),
            ],
            in_channel=True,
        )
    )


COMMAND = Command(
    name="cleanup",
    summary="Preview, run (after you confirm) or schedule image cleanup by policy.",
    example='/docker cleanup preview --policy "unused-since 14d, keep-newest 3, exclude postgres:*"',
    run=run,
    add_arguments=add_arguments,
    actions={"cleanup.confirm": on_confirm, "cleanup.cancel": on_cancel},
    required_role=required_role,
    fleet=lambda args: args.action == "preview",  # `--host all`: a dry run on every host
    spans_hosts=lambda args: args.action == "schedule",  # one schedule for the fleet, one summary
    scheduled=run_scheduled_cleanup,
)
