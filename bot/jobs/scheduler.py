"""Standing instructions: cron schedules for cleanup and reports (APScheduler 3).

Schedules live in the bot's database: our `schedules` table says what to run and where to
post; APScheduler's SQLAlchemy job store says when. Jobs are stored by reference to the
module-level `run_schedule(schedule_id)`, so they survive restarts. In `job_defaults`:
coalesce (a host that was down at 03:00 runs once when it is back, never several times),
one instance at a time, and a generous misfire grace time; a run missed beyond it, a failed
run and a run interrupted by a restart are reported to the schedule's channel.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import func, insert, select, update

from bot import metrics
from bot.engine.fleet import fan_out_answering
from bot.errors import UserError
from bot.render.formatting import format_table, human_size, in_zone
from bot.render.messages import File, Message, code_blocks, header, plain, section, with_context
from bot.render.text import render
from bot.state.schema import schema_lock
from bot.state.tables import runs_table, schedules_table

if TYPE_CHECKING:
    from bot.core.commands import FleetScheduledRunner, ScheduledRunner
    from bot.core.services import Services
    from bot.engine.hosts import DockerHost
    from bot.state.delivery import Delivery

log = logging.getLogger("dockerbot.scheduler")

MISFIRE_GRACE_SECONDS = 6 * 3600
DEFAULT_TZ = "UTC"  # of a schedule's cron line, when `--tz` does not say


_REPORTED_INTERRUPTED = (
    "This run was reported as interrupted while it went on: the replica running it had lost the "
    "scheduler lease (cut off from the database). It finished; this is what it did."
)


def running_scheduler(services: Any) -> Scheduler:
    """The process's scheduler; a clear refusal where none runs (a bare shell, some tests)."""
    if services.scheduler is None:
        raise UserError("Scheduling is not running in this process.")
    return services.scheduler


@dataclass(frozen=True)
class Schedule:
    id: str
    kind: str
    cron: str
    timezone: str
    channel: str
    host: str
    params: dict[str, Any]
    created_by: str
    paused: bool
    next_run: datetime | None


# --------------------------------------------------------------------------------------------- cron

_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


def _cron_days(field: str) -> set[int]:
    """Standard crontab day-of-week (0 or 7 = Sunday, names allowed) as a set of 0..6."""
    days: set[int] = set()
    for part in field.lower().split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError("step must be positive")
        if base == "*":
            lo, hi = 0, 6
        else:
            lo_text, _, hi_text = base.partition("-")
            lo = _DAYS.index(lo_text[:3]) if lo_text[:3] in _DAYS else int(lo_text)
            hi = (_DAYS.index(hi_text[:3]) if hi_text[:3] in _DAYS else int(hi_text)) if hi_text else lo
            if step_text and not hi_text:
                hi = 6
        if not (0 <= lo <= 7 and 0 <= hi <= 7 and lo <= hi):
            raise ValueError(f"day of week {part!r} out of range")
        days.update(d % 7 for d in range(lo, hi + 1, step))
    return days


def cron_trigger(expr: str, tz: str) -> CronTrigger:
    """A crontab line as crontab means it. APScheduler 3 numbers weekdays from Monday = 0
    (its issue #286), so the day-of-week field is translated to names first."""
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise UserError(f"Unknown time zone `{tz}`. Use a name like `Europe/Berlin` or `UTC`.") from None
    fields = expr.split()
    if len(fields) != 5:
        raise UserError(
            f"`{expr}` is not a cron expression: it needs 5 fields (minute hour day month weekday)."
        )
    minute, hour, day, month, dow = fields
    try:
        names = ",".join(_DAYS[d] for d in sorted(_cron_days(dow))) if dow != "*" else "*"
        return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=names, timezone=zone)
    except ValueError as error:
        raise UserError(f"`{expr}` is not a valid cron expression: {error}.") from None


def shortest_interval(trigger: CronTrigger, below: float = 0, horizon: float = 35 * 86400) -> float | None:
    """The shortest time between two runs of `trigger` within `horizon` of its first run (a month and
    more: where every gap of a crontab line shows, across days, weeks and months), stopping early at
    one shorter than `below`; None if it runs less than twice in that time."""
    first = previous = trigger.get_next_fire_time(None, datetime.now(trigger.timezone))
    shortest: float | None = None
    for _ in range(3000):
        if previous is None or first is None or (previous - first).total_seconds() > horizon:
            break
        following = trigger.get_next_fire_time(previous, previous + timedelta(seconds=1))
        if following is None:
            break
        gap = (following - previous).total_seconds()
        shortest = gap if shortest is None else min(shortest, gap)
        if shortest < below:
            break
        previous = following
    return shortest


# --------------------------------------------------------------------------------------------- the job

# APScheduler's persistent job store keeps a reference to a module-level function, not to an
# object, so the job finds this process's running scheduler here.
_active: Scheduler | None = None


def make_job_store(engine: Any) -> SQLAlchemyJobStore:
    """APScheduler's job store on the bot's database, its table made here under the schema lock (its
    own `start` would create it unlocked, racing other replicas starting at the same moment)."""
    store = SQLAlchemyJobStore(engine=engine, tablename="apscheduler_jobs")
    with schema_lock(engine):
        store.jobs_t.create(engine, checkfirst=True)
    return store


def run_schedule(schedule_id: str) -> None:
    """The job function APScheduler stores by reference: run one schedule on its host, post the result."""
    scheduler = _active
    if scheduler is None:
        log.error("schedule %s fired with no scheduler running", schedule_id)
        return
    scheduler.run(schedule_id)


class Scheduler:
    def __init__(self, services: Services, delivery: Delivery) -> None:
        self.services = services
        self.delivery = delivery
        self.engine = services.store.engine
        self.aps = BackgroundScheduler(
            jobstores={"default": make_job_store(self.engine)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": MISFIRE_GRACE_SECONDS},
            timezone=UTC,
        )
        # What a schedule of each kind runs: declared by the commands (Command.scheduled).
        self.runners: dict[str, ScheduledRunner] = {
            command.name: command.scheduled for command in services.commands if command.scheduled
        }
        # What one host of a schedule over several runs (Command.scheduled_in_fleet, else the same).
        self.fleet_parts: dict[str, ScheduledRunner] = {
            command.name: command.scheduled_in_fleet or command.scheduled
            for command in services.commands
            if command.scheduled
        }
        # Kinds whose run covers all the schedule's hosts at once and may have nothing to post.
        self.fleet_runners: dict[str, FleetScheduledRunner] = {
            command.name: command.scheduled_fleet for command in services.commands if command.scheduled_fleet
        }
        self.aps.add_listener(self._on_missed, EVENT_JOB_MISSED)
        self.aps.add_listener(self._on_error, EVENT_JOB_ERROR)
        self._lock = threading.Lock()
        self._leading = threading.Event()  # runs start only while set (see `follow`)
        self._running: set[int] = set()  # this process's runs under way, by run id

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self, paused: bool = False) -> None:
        """The only scheduler on its database (SQLite: one replica): report what a previous
        process left interrupted, and run."""
        global _active
        _active = self
        self._leading.set()
        self._report_interrupted_runs()
        self.aps.start(paused=paused)

    # --- several replicas (bot.jobs.leadership) ------------------------------------------------
    def start_following(self) -> None:
        """One of several replicas: schedules can be added, listed and cancelled (in the shared job
        store), but nothing runs here until `lead`."""
        global _active
        _active = self
        self.aps.start(paused=True)

    def lead(self) -> None:
        """This replica holds the lease now: report the runs the previous holder left, and run."""
        self._leading.set()
        interrupted = self._mark_interrupted_runs()
        self.aps.resume()
        if interrupted:  # the notices go to Slack: not on the lease's thread
            threading.Thread(
                target=self._tell_interrupted, args=(interrupted,), name="interrupted-runs", daemon=True
            ).start()

    def follow(self) -> None:
        """Another replica may lead soon: start no run here (one under way finishes)."""
        self._leading.clear()
        if self.aps.running:
            self.aps.pause()

    @property
    def leading(self) -> bool:
        return self._leading.is_set()

    def wakeup(self) -> None:
        """Look at the job store again: another replica may have added or changed a schedule."""
        if self._leading.is_set() and self.aps.running:
            self.aps.wakeup()

    def shutdown(self, wait: bool = True) -> None:
        global _active
        if self.aps.running:
            self.aps.shutdown(wait=wait)
        if _active is self:
            _active = None

    # --- the API handlers use ------------------------------------------------------------------
    def add(
        self,
        kind: str,
        cron: str,
        *,
        timezone: str,
        channel: str,
        host: str,
        params: dict[str, Any],
        created_by: str,
    ) -> Schedule:
        if kind not in self.runners and kind not in self.fleet_runners:
            raise UserError(f"Nothing can be scheduled as `{kind}`.")
        trigger = cron_trigger(cron, timezone)
        settings = self.services.settings
        gap = shortest_interval(trigger, below=settings.min_schedule_interval)
        if gap is not None and gap < settings.min_schedule_interval:
            raise UserError(
                f"`{cron}` would run every {gap // 60:g} min at times; the shortest interval allowed is "
                f"{settings.min_schedule_interval / 60:g} min (`DOCKERBOT_MIN_SCHEDULE_INTERVAL`)."
            )
        self.services.hosts.select(host)  # an unknown host fails here, not at 03:00
        with self.engine.connect() as conn:
            in_channel = conn.execute(
                select(func.count())
                .select_from(schedules_table)
                .where(schedules_table.c.channel == channel)
                .where(schedules_table.c.cancelled.is_(False))
            ).scalar_one()
        if in_channel >= settings.max_schedules_per_channel:
            raise UserError(
                f"<#{channel}> already has {in_channel} schedules, the most allowed "
                "(`DOCKERBOT_MAX_SCHEDULES_PER_CHANNEL`). Cancel one first."
            )
        schedule_id = secrets.token_hex(3)
        row = {
            "id": schedule_id,
            "kind": kind,
            "cron": cron,
            "timezone": timezone,
            "channel": channel,
            "host": host,
            "params": params,
            "created_by": created_by,
            "created_at": time.time(),
            "paused": False,
            "cancelled": False,
        }
        with self.engine.begin() as conn:
            conn.execute(insert(schedules_table).values(**row))
        self.aps.add_job(
            run_schedule, trigger, args=[schedule_id], id=schedule_id, name=f"{kind} {schedule_id}"
        )
        return self.get(schedule_id)

    def get(self, schedule_id: str) -> Schedule:
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    select(schedules_table)
                    .where(schedules_table.c.id == schedule_id)
                    .where(schedules_table.c.cancelled.is_(False))
                )
                .mappings()
                .first()
            )
        if row is None:
            raise UserError(
                f"There is no schedule `{schedule_id}`."
                " `/docker cleanup list`, `/docker report list` and `/docker outdated list` show them."
            )
        return self._schedule(row)

    def list(self, kind: str | None = None) -> list[Schedule]:
        query = select(schedules_table).where(schedules_table.c.cancelled.is_(False))
        if kind:
            query = query.where(schedules_table.c.kind == kind)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(schedules_table.c.created_at)).mappings().all()
        return [self._schedule(r) for r in rows]

    def cancel(self, schedule_id: str) -> Schedule:
        schedule = self.get(schedule_id)
        self._set(schedule_id, cancelled=True)
        with contextlib.suppress(JobLookupError):
            self.aps.remove_job(schedule_id)
        return schedule

    def pause(self, schedule_id: str) -> Schedule:
        self.get(schedule_id)
        self._set(schedule_id, paused=True)
        self.aps.pause_job(schedule_id)
        return self.get(schedule_id)

    def resume(self, schedule_id: str) -> Schedule:
        self.get(schedule_id)
        self._set(schedule_id, paused=False)
        self.aps.resume_job(schedule_id)
        return self.get(schedule_id)

    # --- running -------------------------------------------------------------------------------
    def run(self, schedule_id: str) -> None:
        try:
            schedule = self.get(schedule_id)
        except UserError:
            log.warning("schedule %s fired but no longer exists", schedule_id)
            return
        if not self._leading.is_set():  # fired just as this replica stopped leading
            log.warning("schedule %s fired after this replica stopped leading; not run here", schedule_id)
            return
        runner = self.runners.get(schedule.kind)
        fleet_runner = self.fleet_runners.get(schedule.kind)
        hosts = self.services.hosts.select(schedule.host)
        run_id = self._run_started(schedule)
        try:
            self._run(schedule, schedule_id, run_id, runner, fleet_runner, hosts)
        finally:
            self._running.discard(run_id)

    def _run(
        self,
        schedule: Schedule,
        schedule_id: str,
        run_id: int,
        runner: ScheduledRunner | None,
        fleet_runner: FleetScheduledRunner | None,
        hosts: list[DockerHost],
    ) -> None:
        state = "done"
        message: Message | None
        try:
            if fleet_runner is not None:
                message = fleet_runner(self.services, hosts, schedule)
            elif runner is None:
                raise RuntimeError(f"no runner for {schedule.kind}")
            elif len(hosts) == 1 and schedule.host != "all":
                message = runner(self.services, hosts[0], schedule.params)
            else:
                message = self._fleet_run(schedule, self.fleet_parts[schedule.kind], hosts)
        except Exception as error:
            log.exception("scheduled %s %s failed", schedule.kind, schedule.id)
            metrics.SCHEDULER_FAILURES.labels(schedule.kind).inc()
            state = "failed"
            message = plain(
                f"The scheduled {schedule.kind} `{schedule.id}` on {schedule.host} failed: {error}"
            )
        if message is None:  # nothing to say this time (the runner audited why)
            self._run_finished(run_id, state, "nothing new")
            return
        if self._run_finished(run_id, state, message.text) == "interrupted":
            message = with_context(message, _REPORTED_INTERRUPTED)
        self.delivery.deliver(schedule.channel, self._with_next_run(message, schedule_id))

    def _fleet_run(self, schedule: Schedule, runner: ScheduledRunner, hosts: list[DockerHost]) -> Message:
        """One summary for the fleet: a row per host, hostname first, then the total."""
        timeout = self.services.settings.fleet_run_timeout
        # A run may rightly take long on a host (a big cleanup), hence its long deadline; but a host
        # that does not even answer a ping within the fleet's host timeout is reported as such then,
        # not after the engine client's own timeout (a minute) has held the whole summary.
        ping_timeout = self.services.settings.host_timeout
        results, silent = fan_out_answering(
            hosts,
            lambda host: runner(self.services, host, schedule.params),
            timeout,
            probe=lambda host: host.ping(timeout=ping_timeout),
            probe_timeout=ping_timeout,
        )
        rows, total, failed = [], 0, 0
        for result in results:
            if result.ok and result.value is not None:
                total += int(result.value.facts.get("reclaimed", 0))
                rows.append([result.host, "ok", result.value.text])
            else:
                failed += 1
                if result.host in silent:
                    why = f"did not answer within {ping_timeout:g} s"
                elif result.timed_out:
                    why = f"no result within {timeout:g} s"
                else:
                    why = f"failed: {result.error}"
                rows.append([result.host, "FAILED", why])
        title = f"Scheduled {schedule.kind} on {len(hosts)} hosts: {len(hosts) - failed} ok, {failed} failed"
        table = format_table(["HOST", "RESULT", "SUMMARY"], rows)
        details = "\n\n".join(
            f"== {r.host} ==\n{render(r.value) if r.ok and r.value else rows[i][2]}"
            for i, r in enumerate(results)
        )
        blocks = [header(title), *code_blocks(table)]
        if schedule.kind == "cleanup":
            blocks.append(section(f"Total reclaimed space: {human_size(total, 4)}"))
        return Message(
            text=title,
            blocks=blocks,
            in_channel=True,
            files=[File(name=f"{schedule.kind}-{schedule.id}.txt", content=details, title=title)],
            facts={"reclaimed": total, "failed": failed},
        )

    def _with_next_run(self, message: Message, schedule_id: str) -> Message:
        schedule = self.get(schedule_id)
        nxt = schedule.next_run
        note = f"Schedule `{schedule_id}`" + (f" · next run {in_zone(nxt, schedule.timezone)}" if nxt else "")
        note += f" · `/docker {schedule.kind} cancel {schedule_id}` stops it"
        return replace(with_context(message, note), in_channel=True)

    def _on_missed(self, event: JobExecutionEvent) -> None:
        metrics.SCHEDULER_FAILURES.labels("missed").inc()
        moment = event.scheduled_run_time
        self._notify(
            event.job_id, lambda zone: f"missed its run at {in_zone(moment, zone)} (the bot was down)"
        )

    def _on_error(self, event: JobExecutionEvent) -> None:
        moment, error = event.scheduled_run_time, event.exception
        self._notify(event.job_id, lambda zone: f"failed at {in_zone(moment, zone)}: {error}")

    def _notify(self, schedule_id: str, what: Callable[[str], str]) -> None:
        """Tell the schedule's channel `what(the schedule's time zone)` happened."""
        try:
            schedule = self.get(schedule_id)
        except UserError:
            return
        self.delivery.deliver(
            schedule.channel,
            plain(
                f"The scheduled {schedule.kind} `{schedule.id}` on {schedule.host} {what(schedule.timezone)}."
            ),
        )

    def _report_interrupted_runs(self) -> None:
        """Runs still marked running belong to a process that died (SIGKILL, power loss): say so once."""
        self._tell_interrupted(self._mark_interrupted_runs())

    def _mark_interrupted_runs(self) -> list[dict[str, Any]]:
        """The runs marked running that no run in this process is doing, each moved to interrupted
        by one UPDATE … WHERE state = 'running': whoever moves it (one replica) reports it."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(runs_table).where(runs_table.c.state == "running")).mappings().all()
        claimed = []
        for row in rows:
            if row["id"] in self._running:
                continue
            with self.engine.begin() as conn:
                moved = conn.execute(
                    update(runs_table)
                    .where(runs_table.c.id == row["id"])
                    .where(runs_table.c.state == "running")
                    .values(state="interrupted")
                ).rowcount
            if moved == 1:
                claimed.append(dict(row))
        return claimed

    def _tell_interrupted(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            started = datetime.fromtimestamp(row["started_at"], tz=UTC)
            self._notify(
                row["schedule_id"],
                lambda zone, at=started: (
                    f"was interrupted: the run started at {in_zone(at, zone)} did not finish"
                ),
            )

    def _run_started(self, schedule: Schedule) -> int:
        with self.engine.begin() as conn:
            result = conn.execute(
                insert(runs_table).values(
                    schedule_id=schedule.id,
                    host=schedule.host,
                    started_at=time.time(),
                    state="running",
                    kind=schedule.kind,
                )
            )
        run_id = int(result.inserted_primary_key[0])
        self._running.add(run_id)
        return run_id

    def _run_finished(self, run_id: int, state: str, summary: str) -> str | None:
        """Record how the run ended; returns the state it had ("interrupted" when another replica,
        having taken the lease while this one was cut off, already reported it as interrupted)."""
        with self.engine.begin() as conn:
            before = conn.execute(select(runs_table.c.state).where(runs_table.c.id == run_id)).scalar()
            conn.execute(
                update(runs_table)
                .where(runs_table.c.id == run_id)
                .values(state=state, finished_at=time.time(), summary=summary)
            )
        return before

    def last_run(self, kind: str, visible: Callable[[str], bool] | None = None) -> dict[str, Any] | None:
        """The latest finished run of a kind (on a host `visible` passes): when, on which schedule and
        host, and what it said."""
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    select(runs_table)
                    .where(runs_table.c.kind == kind)
                    .where(runs_table.c.finished_at.is_not(None))
                    .order_by(runs_table.c.finished_at.desc())
                    .limit(1 if visible is None else 200)
                )
                .mappings()
                .all()
            )
        return next((dict(r) for r in rows if visible is None or visible(r["host"])), None)

    # --- helpers -------------------------------------------------------------------------------
    def _set(self, schedule_id: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(schedules_table).where(schedules_table.c.id == schedule_id).values(**values))

    def _schedule(self, row: Any) -> Schedule:
        job = self.aps.get_job(row["id"])
        return Schedule(
            id=row["id"],
            kind=row["kind"],
            cron=row["cron"],
            timezone=row["timezone"],
            channel=row["channel"],
            host=row["host"],
            params=row["params"],
            created_by=row["created_by"],
            paused=row["paused"],
            next_run=job.next_run_time if job is not None else None,
        )
