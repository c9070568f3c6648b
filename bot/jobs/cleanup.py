"""A cleanup as the bot runs it: plan, run, audit each image, update the ledger, summarise.

The pieces: bot/jobs/policy.py (the rules), bot/jobs/cleanup_plan.py (the dry run), bot/jobs/cleanup_run.py
(removing a plan's candidates), bot/jobs/cleanup_report.py (the preview and the summary message).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import docker

from bot import metrics
from bot.engine.hosts import DockerHost, EngineUnavailable, connection_cause, connection_errors
from bot.engine.removal import explain
from bot.errors import UserError
from bot.jobs.cleanup_plan import CleanupPlan, plan_cleanup
from bot.jobs.cleanup_report import summary_message
from bot.jobs.cleanup_run import CleanupResult, Removed, Skipped, execute_cleanup
from bot.jobs.policy import Policy, resolve_policy
from bot.render.messages import Message
from bot.state.store import GroupAudit, audit_row

if TYPE_CHECKING:
    from bot.core.services import Services
    from bot.engine.ledger import Ledger

log = logging.getLogger("dockerbot.cleanup")


def ledger_of(services: Services) -> Ledger:
    """The process's ledger; a bare Services (a test, a one-off) gets one on the same database."""
    if services.ledger is None:
        from bot.engine.ledger import Ledger

        services.ledger = Ledger(services.store.engine)
    return services.ledger


def plan_now(services: Services, host: DockerHost, policy: Policy, *, record: bool = False) -> CleanupPlan:
    """The dry run as of now, with last use from the process's ledger; `record` (a run) also
    brings the ledger up to date with what the listing shows."""
    return plan_cleanup(
        host.api, policy, host_name=host.name, ledger=ledger_of(services), now=time.time(), record=record
    )


def run_cleanup(
    services: Services,
    host: DockerHost,
    policy: Policy,
    *,
    audit_as: tuple[str, str, str | None] = ("schedule", "-", None),
) -> Message:
    """Plan and run now, audited per image; the summary even when the engine is down."""
    user, channel, request_id = audit_as
    started = time.monotonic()
    try:
        plan = plan_now(services, host, policy, record=True)
    except (EngineUnavailable, *connection_errors()) as error:
        cause = error.cause if isinstance(error, EngineUnavailable) else connection_cause(error)
        result = CleanupResult(
            host.name, policy.text, errors=[f"Cannot reach the Docker engine on {host.name}: {cause}."]
        )
        result.duration = time.monotonic() - started
        metrics.CLEANUP_RUNS.labels("failed").inc()
        return summary_message(host.name, result)
    except docker.errors.APIError as error:
        result = CleanupResult(host.name, policy.text, errors=[explain(error)])
        metrics.CLEANUP_RUNS.labels("failed").inc()
        return summary_message(host.name, result)
    return summary_message(
        host.name,
        execute_plan(
            services, host, plan, policy.build_cache, user=user, channel=channel, request_id=request_id
        ),
    )


def execute_plan(
    services: Services,
    host: DockerHost,
    plan: CleanupPlan,
    prune_build_cache: bool,
    *,
    user: str,
    channel: str,
    request_id: str | None,
) -> CleanupResult:
    entries = GroupAudit(services.store)

    def audit(outcome: Removed | Skipped) -> None:
        result = "; ".join(outcome.lines) if isinstance(outcome, Removed) else f"skipped: {outcome.reason}"
        entries.add(
            audit_row(
                user=user,
                channel=channel,
                host=host.name,
                action="cleanup.remove",
                image_id=outcome.image_id,
                tags=outcome.tags,
                result=result[:2000],
                request_id=request_id,
            )
        )

    result = execute_cleanup(host.api, plan, prune_build_cache=prune_build_cache, on_done=audit)
    metrics.CLEANUP_RUNS.labels("failed" if result.errors else "ok").inc()
    metrics.RECLAIMED_BYTES.inc(result.reclaimed)
    try:
        entries.flush()
    except Exception as error:  # the removals happened: the summary must still say what they were
        log.exception("could not write the cleanup's audit entries")
        result.errors.append(f"Some audit entries could not be written: {type(error).__name__}.")
    ledger_of(services).forget_many(host.name, [removed.image_id for removed in result.removed])
    return result


def run_scheduled_cleanup(services: Services, host: DockerHost, params: dict[str, Any]) -> Message:
    """What the scheduler calls for each run (params: {"policy": text}). Never raises."""
    try:
        policy = resolve_policy(params.get("policy"), services)
    except UserError as error:
        result = CleanupResult(host.name, str(params.get("policy") or ""), errors=[f"Bad policy: {error}"])
        return summary_message(host.name, result)
    try:
        return run_cleanup(services, host, policy)
    except Exception as error:  # a summary always goes out
        log.exception("scheduled cleanup on %s failed", host.name)
        result = CleanupResult(
            host.name, policy.text, errors=[f"The run failed: {type(error).__name__}: {error}"]
        )
        return summary_message(host.name, result)
