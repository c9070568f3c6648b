"""Schedules survive restarts, fire once after downtime, and every result reaches the channel once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert

from bot.core.commands import Command, UserError
from bot.core.services import Services, build_services
from bot.core.settings import Settings
from bot.engine.hosts import DockerHost
from bot.jobs.scheduler import Scheduler, cron_trigger, runs_table
from bot.render.messages import Message, plain
from bot.slack.client import make_web_client
from bot.slack.reply import SlackPoster
from bot.state.delivery import Delivery
from handlers import COMMANDS
from tests.fakes.slack import FakeSlack


class RecordingPoster:
    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.posted: list[tuple[str, str]] = []
        self.event = threading.Event()

    def post(self, channel: str, message: Message) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("slack is down")
        self.posted.append((channel, message.text))
        self.event.set()

    def wait(self, count: int, timeout: float = 10) -> list[tuple[str, str]]:
        deadline = time.monotonic() + timeout
        while len(self.posted) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.posted


runs: list[str] = []


def probe(services: Services, host: DockerHost, params: dict) -> Message:
    runs.append(params["tag"])
    return plain(f"probe {params['tag']} ran on {host.name}")


def _no_run(req: object, reply: object) -> None:
    raise AssertionError("the probe is only ever scheduled")


# A command whose schedules run `probe`: the scheduler takes its runners from the command list.
PROBE = Command(name="probe", summary="test probe", example="", run=_no_run, scheduled=probe)


@pytest.fixture(autouse=True)
def _probe_runner(services: Services) -> Iterator[None]:
    services.commands = [*services.commands, PROBE]
    runs.clear()
    yield


@pytest.fixture
def settings(settings: Settings, db_url: str) -> Settings:
    """Every scheduler test runs on SQLite and on PostgreSQL."""
    return settings.model_copy(update={"database_url": db_url})


def _fire_now(scheduler: Scheduler, schedule_id: str) -> None:
    scheduler.aps.modify_job(schedule_id, next_run_time=datetime.now(UTC))


def test_a_schedule_survives_a_restart_and_still_fires(services: Services) -> None:
    poster = RecordingPoster()
    first = Scheduler(services, Delivery(services.store.engine, poster))
    first.start()
    try:
        schedule = first.add(
            "probe",
            "0 3 * * *",
            timezone="Europe/Berlin",
            channel="C9",
            host="local",
            params={"tag": "a"},
            created_by="U1",
        )
        assert schedule.next_run is not None and schedule.next_run.hour in (2, 3)  # 03:00 Berlin
    finally:
        first.shutdown()

    restarted_services = build_services(services.settings, [*COMMANDS, PROBE])
    second = Scheduler(restarted_services, Delivery(restarted_services.store.engine, poster))
    second.start()
    try:
        [again] = second.list("probe")
        assert again.id == schedule.id and again.next_run == schedule.next_run
        _fire_now(second, schedule.id)
        [(channel, text)] = poster.wait(1)
        assert channel == "C9" and text == "probe a ran on local"
        deadline = time.monotonic() + 5
        while second.last_run("probe") is None and time.monotonic() < deadline:
            time.sleep(0.05)
        last = second.last_run("probe")
        assert last is not None and last["summary"] == "probe a ran on local" and last["state"] == "done"
    finally:
        second.shutdown()
        restarted_services.close()


def test_a_misfire_after_downtime_runs_once(services: Services) -> None:
    poster = RecordingPoster()
    scheduler = Scheduler(services, Delivery(services.store.engine, poster))
    scheduler.start(paused=True)  # as if the bot was down while the runs were due
    try:
        schedule = scheduler.add(
            "probe",
            "*/10 * * * *",
            timezone="UTC",
            channel="C9",
            host="local",
            params={"tag": "m"},
            created_by="U1",
        )
        scheduler.aps.modify_job(schedule.id, next_run_time=datetime.now(UTC) - timedelta(hours=3))
        scheduler.aps.resume()  # 18 runs were missed; coalesce makes them one
        poster.wait(1)
        time.sleep(1)
        assert runs == ["m"]
    finally:
        scheduler.shutdown()


def test_pause_resume_cancel(services: Services) -> None:
    scheduler = Scheduler(services, Delivery(services.store.engine, RecordingPoster()))
    scheduler.start()
    try:
        schedule = scheduler.add(
            "probe",
            "0 * * * *",
            timezone="UTC",
            channel="C9",
            host="local",
            params={"tag": "p"},
            created_by="U1",
        )
        assert scheduler.pause(schedule.id).next_run is None
        assert scheduler.resume(schedule.id).next_run is not None
        scheduler.cancel(schedule.id)
        assert scheduler.list() == []
        with pytest.raises(UserError, match="There is no schedule"):
            scheduler.pause(schedule.id)
    finally:
        scheduler.shutdown()


def test_bad_cron_timezone_and_host_are_refused(services: Services) -> None:
    scheduler = Scheduler(services, Delivery(services.store.engine, RecordingPoster()))
    for cron, tz, host, error in [
        ("0 3 * *", "UTC", "local", "needs 5 fields"),
        ("0 25 * * *", "UTC", "local", "not a valid cron expression"),
        ("0 3 * * *", "Mars/Olympus", "local", "Unknown time zone"),
        ("0 3 * * *", "UTC", "nowhere", "Unknown host"),
    ]:
        with pytest.raises(UserError, match=error):
            scheduler.add("probe", cron, timezone=tz, channel="C9", host=host, params={}, created_by="U1")
    assert scheduler.list() == []


def test_crontab_weekdays_mean_what_crontab_says() -> None:
    # APScheduler 3 numbers Monday as 0; crontab's 0 (and 7) is Sunday.
    start = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)  # a Friday
    sunday = cron_trigger("0 3 * * 0", "UTC").get_next_fire_time(None, start)
    assert sunday is not None and sunday.strftime("%A") == "Sunday"
    assert cron_trigger("0 3 * * 7", "UTC").get_next_fire_time(None, start) == sunday
    monday = cron_trigger("0 3 * * 1-5", "UTC").get_next_fire_time(None, start + timedelta(days=1))
    assert monday is not None and monday.strftime("%A") == "Monday"
    every_other = cron_trigger("0 3 * * */2", "UTC")  # crontab: Sun, Tue, Thu, Sat
    fires, moment = [], start
    for _ in range(4):
        moment = every_other.get_next_fire_time(None, moment + timedelta(minutes=1))
        fires.append(moment.strftime("%a"))
    assert fires == ["Sat", "Sun", "Tue", "Thu"]


def test_an_interrupted_run_is_reported_after_restart(services: Services) -> None:
    poster = RecordingPoster()
    scheduler = Scheduler(services, Delivery(services.store.engine, poster))
    scheduler.start()
    schedule = scheduler.add(
        "probe", "0 3 * * *", timezone="UTC", channel="C9", host="local", params={"tag": "i"}, created_by="U1"
    )
    scheduler.shutdown()
    with services.store.engine.begin() as conn:  # what a SIGKILL mid-run leaves behind
        conn.execute(
            insert(runs_table).values(
                schedule_id=schedule.id, host="local", started_at=time.time(), state="running"
            )
        )
    again = Scheduler(services, Delivery(services.store.engine, poster))
    again.start()
    try:
        [(channel, text)] = poster.wait(1)
        assert channel == "C9" and "was interrupted" in text
        again.shutdown()
        third = Scheduler(services, Delivery(services.store.engine, poster))
        third.start()
        third.shutdown()
        assert len(poster.posted) == 1, "reported once, not at every start"
    finally:
        again.shutdown()


def test_a_result_that_cannot_be_posted_is_kept_and_posted_with_the_next(services: Services) -> None:
    poster = RecordingPoster(failures=1)
    delivery = Delivery(services.store.engine, poster)
    assert not delivery.deliver("C9", plain("first"))
    assert delivery.pending("C9") == 1
    assert delivery.deliver("C9", plain("second"))
    assert poster.posted == [("C9", "first"), ("C9", "second")]
    assert delivery.pending() == 0


def test_slack_500_then_200_posts_exactly_once(services: Services, fake_slack: FakeSlack) -> None:
    settings = services.settings.model_copy(update={"slack_api_url": fake_slack.api_url})
    delivery = Delivery(services.store.engine, SlackPoster(make_web_client(settings)))
    fake_slack.fail("chat.postMessage", status=500, times=1)
    assert delivery.deliver("C0009", plain("summary"))
    attempts = fake_slack.calls("chat.postMessage")
    assert len(attempts) == 2
    assert [c.body["text"] for c in fake_slack.calls("chat.postMessage", ok=True)] == ["summary"]


def test_slack_429_then_500_then_ok_posts_exactly_once(services: Services, fake_slack: FakeSlack) -> None:
    settings = services.settings.model_copy(update={"slack_api_url": fake_slack.api_url})
    delivery = Delivery(services.store.engine, SlackPoster(make_web_client(settings)))
    fake_slack.fail("chat.postMessage", status=429, retry_after=1, times=1)
    fake_slack.fail("chat.postMessage", status=500, times=1)
    assert delivery.deliver("C0009", plain("summary"))
    assert [c.body["text"] for c in fake_slack.calls("chat.postMessage", ok=True)] == ["summary"]


def test_a_run_another_replica_reported_interrupted_says_so_when_it_finishes(services: Services) -> None:
    """A replica cut off from the database loses the lease while a run goes on; the new holder
    reports that run interrupted. When the run finishes after all, its summary says both."""
    posted: list[Message] = []

    class Recorder:
        def post(self, channel: str, message: Message) -> None:
            posted.append(message)

    cut_off = [True]  # the first run only

    def reported_meanwhile(services: Services, host: DockerHost, params: dict) -> Message:
        if cut_off.pop() if cut_off else False:
            with services.store.engine.begin() as conn:  # what the new lease holder's sweep does
                conn.execute(
                    runs_table.update().where(runs_table.c.state == "running").values(state="interrupted")
                )
        return plain("Cleanup on local: 3 images removed")

    services.commands = [
        *services.commands,
        Command(name="lateprobe", summary="", example="", run=_no_run, scheduled=reported_meanwhile),
    ]
    scheduler = Scheduler(services, Delivery(services.store.engine, Recorder()))
    scheduler.start(paused=True)
    try:
        made = scheduler.add(
            "lateprobe", "0 3 * * *", timezone="UTC", channel="C1", host="local", params={}, created_by="U1"
        )
        scheduler.run(made.id)
        [message] = posted
        notes = [b["elements"][0]["text"] for b in message.blocks if b["type"] == "context"]
        assert message.text == "Cleanup on local: 3 images removed"
        assert any("reported as interrupted while it went on" in n for n in notes), notes
        assert scheduler.last_run("lateprobe")["state"] == "done"  # type: ignore[index]

        posted.clear()
        scheduler.run(made.id)  # an ordinary run has no such line
        notes = [b["elements"][0]["text"] for b in posted[0].blocks if b["type"] == "context"]
        assert not any("interrupted" in n for n in notes)
    finally:
        scheduler.shutdown()
