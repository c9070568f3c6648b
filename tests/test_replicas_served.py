"""Issue 18's acceptance: two served replicas (`python -m bot serve`, Socket Mode) on one PostgreSQL,
the fake Slack spreading envelopes over both connections as Slack does."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from bot.core.services import build_services
from bot.core.settings import Settings
from bot.jobs.scheduler import Scheduler
from bot.render.messages import Message
from bot.sandbox import Engine
from bot.state.delivery import Delivery
from handlers import COMMANDS
from tests.botprocess import start_bot
from tests.fakes.images import Spec, load_images
from tests.fakes.registry import FakeRegistry
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_requests import block_actions_payload, button_labelled, slash_command_payload
from tests.postgres import fresh_database

LEASE = 3.0  # seconds (30 by default): the takeover is timed against it
DAY = 86400.0
SUMMARIES = "CSUM"


class Quiet:
    def post(self, channel: str, message: Message) -> None:
        pass


class Replicas:
    """Two bots on one database, and what the test reads of it."""

    def __init__(self, engine: Engine, slack: FakeSlack, url: str, data: Path) -> None:
        self.slack = slack
        self.db = create_engine(url)
        env = {
            "DOCKERBOT_DATABASE_URL": url,
            "DOCKERBOT_LEASE_SECONDS": str(LEASE),
            "DOCKERBOT_ADMINS": "U111",
        }
        self.bots = {
            name: start_bot(engine, slack, data / name, socket_mode=True, DOCKERBOT_REPLICA=name, **env)
            for name in ("a", "b")
        }

    def rows(self, query: str) -> list[Any]:
        with self.db.connect() as conn:
            return list(conn.execute(text(query)).all())

    def leader(self, timeout: float = LEASE * 3) -> str:
        deadline = time.monotonic() + timeout
        while True:
            holders = self.rows(
                "SELECT holder FROM leases WHERE name = 'scheduler'"
                " AND expires_at > extract(epoch FROM clock_timestamp())"
            )
            if holders:
                return str(holders[0][0]).split("/")[0]
            assert time.monotonic() < deadline, "no replica took the scheduler lease"
            time.sleep(0.05)

    def metric(self, name: str, line_start: str) -> float:
        with urllib.request.urlopen(self.bots[name].health + "/metrics", timeout=10) as response:
            lines = response.read().decode().splitlines()
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(line_start))

    def stop(self) -> None:
        for bot in self.bots.values():
            if bot.proc.poll() is None:
                bot.proc.send_signal(signal.SIGTERM)
        for bot in self.bots.values():
            try:
                bot.proc.wait(30)
            except Exception:  # noqa: BLE001 - a bot that hangs is killed; the test already said why
                bot.proc.kill()
        self.db.dispose()


@pytest.fixture
def replicas(
    clean_engine: Engine, fake_slack: FakeSlack, postgres_server: str, tmp_path: Path
) -> Iterator[Replicas]:
    fake_slack.spread_envelopes = True
    both = Replicas(clean_engine, fake_slack, fresh_database(postgres_server), tmp_path)
    try:
        fake_slack.wait_connected(30, connections=2)
        deadline = time.monotonic() + 30
        while fake_slack.active_connections < 2:
            assert time.monotonic() < deadline, "both replicas connect"
            time.sleep(0.05)
        yield both
    finally:
        both.stop()


def command(slack: FakeSlack, text_: str, tag: str) -> str:
    payload = slash_command_payload(text_, user_id="U111", response_url=slack.response_url(tag))
    return slack.send_envelope("slash_commands", payload)


def press(slack: FakeSlack, card: dict[str, Any], label: str, tag: str) -> str:
    button = button_labelled(card["blocks"], label)
    payload = block_actions_payload(
        button["action_id"],
        button["value"],
        user_id="U111",
        response_url=slack.response_url(tag),
        message=card,
    )
    return slack.send_envelope("interactive", payload)


def answers(slack: FakeSlack, tags: list[str], timeout: float = 120) -> Counter[str]:
    """How many answers each tag got, once every tag got one (and a moment more, for doubles)."""
    wanted = set(tags)
    deadline = time.monotonic() + timeout
    while True:
        got = Counter(c.tag for c in slack.calls("response_url") if c.tag in wanted)
        if set(got) == wanted:
            break
        missing = sorted(wanted - set(got))
        assert time.monotonic() < deadline, f"{len(missing)} unanswered, e.g. {missing[:5]}"
        time.sleep(0.1)
    time.sleep(1.0)
    return Counter(c.tag for c in slack.calls("response_url") if c.tag in wanted)


def force_run(settings: Settings, url: str, schedule_id: str) -> None:
    """Make the schedule due in a lease's time, in the shared job store: every replica that runs a
    scheduler sees it by then (at its renewal, every third of the lease) and would fire it at once."""
    services = build_services(settings.model_copy(update={"database_url": url}), COMMANDS)
    scheduler = Scheduler(services, Delivery(services.store.engine, Quiet()))
    scheduler.start_following()
    scheduler.aps.modify_job(schedule_id, next_run_time=datetime.now(UTC) + timedelta(seconds=LEASE))
    scheduler.shutdown(wait=False)
    services.close()


def summaries(slack: FakeSlack, needle: str) -> list[Any]:
    return [
        c
        for c in slack.calls("chat.postMessage")
        if c.body.get("channel") == SUMMARIES and needle in json.dumps(c.body)
    ]


def test_two_replicas_answer_everything_once_and_run_one_scheduler(
    replicas: Replicas, clean_engine: Engine, fake_slack: FakeSlack, settings: Settings
) -> None:
    # 1. Commands and button presses, spread over both replicas: each answered exactly once.
    tags = [f"help-{n}" for n in range(100)] + [f"images-{n}" for n in range(40)]
    for tag in tags:
        command(fake_slack, "help" if tag.startswith("help") else "images", tag)
    load_images(clean_engine, [Spec([f"replica/t{n}:1"], DAY) for n in range(20)])
    cards = [f"card-{n}" for n in range(20)]
    for n, tag in enumerate(cards):
        command(fake_slack, f"rmi replica/t{n}:1", tag)
    assert set(answers(fake_slack, tags + cards).values()) == {1}, "every command answered once"
    presses = []
    for tag in cards:
        [card] = [c.body for c in fake_slack.calls("response_url") if c.tag == tag]
        for twice in ("a", "b"):  # a double click: two presses, on the two replicas in turn
            presses.append(f"{tag}-{twice}")
            press(fake_slack, card, "Confirm", presses[-1])
    assert set(answers(fake_slack, presses).values()) == {1}, "every press answered once"
    assert len(fake_slack.envelopes) == 200
    connections = Counter(fake_slack.sent_on.values())
    assert len(connections) == 2 and min(connections.values()) >= 99, "spread over both replicas"
    for name in ("a", "b"):
        assert replicas.metric(name, 'dockerbot_commands_total{command="help"') > 0, f"{name} answered some"
    assert clean_engine.cli("images", "-q", "replica/*").stdout.strip() == "", "every card's image removed"
    removals = replicas.rows(
        "SELECT image_id, count(*) FROM audit_log WHERE action = 'rmi.remove' GROUP BY image_id"
    )
    assert len(removals) == 20 and {count for _, count in removals} == {1}, "one removal per card"

    # 2. A cleanup schedule: each forced run posts exactly one summary, from the replica that leads.
    command(
        fake_slack,
        f'cleanup schedule "0 3 * * *" --policy "dangling, grace 0" --channel {SUMMARIES}',
        "sched",
    )
    answers(fake_slack, ["sched"])
    [(schedule_id,)] = replicas.rows("SELECT id FROM schedules")
    for run in range(1, 3):
        load_images(clean_engine, [Spec([], 30 * DAY) for _ in range(3)])
        force_run(settings, replicas.db.url.render_as_string(hide_password=False), schedule_id)
        deadline = time.monotonic() + 60
        while len(summaries(fake_slack, f"Schedule `{schedule_id}`")) < run:
            assert time.monotonic() < deadline, f"run {run} posted no summary"
            time.sleep(0.1)
        time.sleep(LEASE)  # time for a second summary, were there a second scheduler
        assert len(summaries(fake_slack, f"Schedule `{schedule_id}`")) == run, "one summary per run"
    assert replicas.rows("SELECT state FROM schedule_runs") == [("done",), ("done",)]
    first = replicas.leader()
    assert replicas.metric(first, "dockerbot_scheduler_lease_held") == 1
    other = "b" if first == "a" else "a"
    assert replicas.metric(other, "dockerbot_scheduler_lease_held") == 0

    # 3. SIGKILL of the leader mid-run: the other takes over within the lease, reports the run once.
    load_images(clean_engine, [Spec([], 400 * DAY) for _ in range(300)])
    force_run(settings, replicas.db.url.render_as_string(hide_password=False), schedule_id)
    deadline = time.monotonic() + 60
    while not replicas.rows("SELECT id FROM schedule_runs WHERE state = 'running'"):
        assert time.monotonic() < deadline, "the scheduled cleanup did not start"
        time.sleep(0.02)
    leader = replicas.leader()
    killed = time.monotonic()
    replicas.bots[leader].proc.send_signal(signal.SIGKILL)
    replicas.bots[leader].proc.wait(10)
    left = len(clean_engine.cli("images", "-aq").stdout.split())
    assert left > 0, "killed in the middle of the run"
    survivor = "b" if leader == "a" else "a"
    [notice] = fake_slack.wait_for(
        "chat.postMessage", lambda c: "was interrupted" in c.body.get("text", ""), timeout=LEASE * 4
    )
    took = time.monotonic() - killed
    assert replicas.leader() == survivor
    assert took < LEASE * 1.5, f"the survivor reported the interrupted run {took:.1f} s after the kill"
    assert notice.body["channel"] == SUMMARIES and schedule_id in notice.body["text"]
    # A new run goes on where the killed one stopped: one summary, nothing removed twice.
    force_run(settings, replicas.db.url.render_as_string(hide_password=False), schedule_id)
    deadline = time.monotonic() + 120
    while len(summaries(fake_slack, f"Schedule `{schedule_id}`")) < 3:
        assert time.monotonic() < deadline, "the run after the takeover posted no summary"
        time.sleep(0.1)
    time.sleep(LEASE)
    assert len(summaries(fake_slack, f"Schedule `{schedule_id}`")) == 3
    interrupted = [
        c for c in fake_slack.calls("chat.postMessage") if "was interrupted" in c.body.get("text", "")
    ]
    assert len(interrupted) == 1, "reported once"
    states = Counter(state for (state,) in replicas.rows("SELECT state FROM schedule_runs"))
    assert states == {"done": 3, "interrupted": 1}, "no run lost or doubled"
    removed = replicas.rows(
        "SELECT image_id FROM audit_log WHERE action = 'cleanup.remove' GROUP BY image_id HAVING count(*) > 1"
    )
    assert removed == [], "nothing removed twice"
    assert clean_engine.cli("images", "-aq").stdout.strip() == "", (
        "the run after the takeover removed the rest"
    )
    assert replicas.metric(survivor, "dockerbot_scheduler_lease_held") == 1


def test_a_pulls_message_says_so_when_the_replica_running_it_dies(
    replicas: Replicas, fake_slack: FakeSlack, fake_registry: FakeRegistry
) -> None:
    fake_registry.stall_blobs = True  # the pull starts, then waits for its layers
    command(fake_slack, f"pull {fake_registry.address}/library/ubuntu:latest", "pull")
    [progress] = fake_slack.wait_for("chat.postMessage", timeout=60)
    channel, ts = progress.response["channel"], progress.response["ts"]
    deadline = time.monotonic() + 10
    while not (owners := replicas.rows(f"SELECT owner FROM live_messages WHERE ts = '{ts}'")):
        assert time.monotonic() < deadline, "the live message is recorded for the other replica"
        time.sleep(0.05)
    running = str(owners[0][0]).split("/")[0]
    killed = time.monotonic()
    replicas.bots[running].proc.send_signal(signal.SIGKILL)
    replicas.bots[running].proc.wait(10)
    fake_slack.wait_for(
        "chat.update", lambda c: c.body.get("ts") == ts and "Interrupted" in str(c.body), timeout=LEASE * 3
    )
    took = time.monotonic() - killed
    assert took < LEASE * 2, f"marked {took:.1f} s after the replica died"
    assert fake_slack.message(channel, ts)["text"].startswith(":warning: Interrupted")
    time.sleep(LEASE)
    marks = [
        c for c in fake_slack.calls("chat.update") if c.body.get("ts") == ts and "Interrupted" in str(c.body)
    ]
    assert len(marks) == 1, "marked once"
    assert replicas.rows("SELECT ts FROM live_messages") == []
