"""What every way of running the bot does first: settings, secrets to redact, standing work."""

from __future__ import annotations

import gc
import logging
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from bot.core.settings import Settings, describe_error

if TYPE_CHECKING:
    from bot.core.services import Services
    from bot.state.delivery import Poster
    from bot.state.live_messages import LiveMessages

# Marks messages (channel, ts) whose updates stopped: the worker's Slack client does it.
MarkInterrupted = Callable[[list[tuple[str, str]]], None]
log = logging.getLogger("dockerbot.startup")


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        sys.exit(f"Configuration error:\n{describe_error(error)}")


def secrets_of(settings: Settings) -> tuple[str, ...]:
    values = (settings.slack_bot_token, settings.slack_app_token, settings.slack_signing_secret)
    return tuple(v.get_secret_value() for v in values if v)


def share_metrics(directory: Path) -> None:
    """Metrics from every process of the bot, summed at /metrics (prometheus-client's multiprocess
    mode). It reads this variable once, on import: call before anything imports bot.metrics."""
    if "prometheus_client" in sys.modules:
        raise RuntimeError("share_metrics must run before prometheus_client is imported")
    shutil.rmtree(directory, ignore_errors=True)  # counts of an earlier run would be added in
    directory.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)


def start_background(
    services: Services, poster: Poster, mark_interrupted: MarkInterrupted | None = None
) -> None:
    """This process's standing work: the scheduler, and the last-use ledger following each engine.

    On SQLite (one replica) they simply run. On PostgreSQL several replicas may share the database:
    each serves schedule commands, and only the holder of the scheduler lease runs them. That one
    also marks, with `mark_interrupted`, the live messages of replicas that died."""
    import os
    import secrets

    from bot import metrics
    from bot.engine.ledger import Ledger
    from bot.jobs.leadership import Leadership
    from bot.jobs.scheduler import Scheduler
    from bot.state.delivery import Delivery
    from bot.state.lease import Lease
    from bot.state.live_messages import LiveMessages, presence

    settings, engine = services.settings, services.store.engine
    ledger = services.ledger = Ledger(engine)
    scheduler = services.scheduler = Scheduler(services, Delivery(engine, poster))
    held = metrics.SCHEDULER_LEASE.labels(settings.replica)
    if engine.dialect.name != "postgresql":
        ledger.start_watching(services.hosts)
        scheduler.start()
        held.set(1)
        return
    scheduler.start_following()

    holder = f"{settings.replica}/{os.getpid()}/{secrets.token_hex(3)}"  # this process, this start
    live = services.live_messages = LiveMessages(engine, holder)
    sweep = _orphan_sweep(live, mark_interrupted)

    def gain() -> None:
        scheduler.lead()
        ledger.start_watching(services.hosts)
        held.set(1)
        sweep()

    def renewed() -> None:
        scheduler.wakeup()
        if scheduler.leading:
            sweep()

    def lose() -> None:
        scheduler.follow()  # first: no run may start here once another replica could lead
        held.set(0)
        ledger.stop()

    services.leadership = Leadership(
        Lease(engine, "scheduler", holder, settings.lease_seconds),
        on_gain=gain,
        on_loss=lose,
        on_renewed=renewed,
        presence=presence(engine, holder, settings.lease_seconds),
    )
    held.set(0)
    services.leadership.start()


def _orphan_sweep(live: LiveMessages, mark: MarkInterrupted | None) -> Callable[[], None]:
    """Mark the live messages of replicas that died, on a thread of its own (Slack calls must not
    hold up the lease's renewals), one sweep at a time."""
    import threading

    busy = threading.Lock()

    def sweep() -> None:
        try:
            orphans = live.claim_orphans()
            if orphans and mark is not None:
                mark(orphans)
        except Exception:  # the next renewal sweeps again
            log.exception("could not mark the messages of a replica that stopped")
        finally:
            busy.release()

    def start() -> None:
        if busy.acquire(blocking=False):
            threading.Thread(target=sweep, name="orphan-sweep", daemon=True).start()

    return start


def freeze_start_up_objects() -> None:
    """Take what start-up built (modules, settings, clients, services: ~90,000 objects that live as
    long as the process) out of the garbage collector's sight. Each full collection walked them all,
    and a big reply triggers several: on `images` of 10,000 tags the collector took 109 ms of the
    command's CPU, 26 ms once they were frozen. Call last, when start-up is done."""
    gc.freeze()
