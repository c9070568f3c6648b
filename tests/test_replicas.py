"""Several replicas on one PostgreSQL: migrations under a lock, one scheduler lease, deliveries
taken once across processes."""

from __future__ import annotations

import multiprocessing
import threading
import time
import traceback
from typing import Any
from urllib.parse import parse_qs

from apscheduler.schedulers.base import STATE_PAUSED, STATE_RUNNING
from slack_bolt import BoltRequest
from sqlalchemy import create_engine, inspect, text

from bot import metrics
from bot.core.services import build_services
from bot.core.settings import Settings
from bot.jobs.leadership import Leadership
from bot.render.messages import Message
from bot.runtime.startup import start_background
from bot.sandbox import Engine
from bot.slack.app import REPLAY_WINDOW, create_app
from bot.state.deliveries import Deliveries
from bot.state.lease import Lease
from bot.state.schema import migrate
from bot.state.store import make_engine
from handlers import COMMANDS
from tests.conftest import SIGNING_SECRET
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_requests import signed_headers, slash_command_body
from tests.fakes.tcpproxy import TcpProxy
from tests.postgres import fresh_database

REPLICAS = 6  # without the lock all but one failed, every time (pg_type_typname_nsp_index)


def _start_replica(url: str, barrier: Any, results: Any) -> None:
    """(In a child process.) What a replica does to its database at start, released with the others."""
    try:
        from bot.jobs.scheduler import make_job_store
        from bot.state.store import Store, make_engine

        warm = make_engine(url)
        with warm.connect():  # connected before the barrier: all start creating tables at once
            barrier.wait(30)
            store = Store(url)
        make_job_store(store.engine)
        store.close()
        results.put("ok")
    except Exception:  # noqa: BLE001 - the parent asserts on what each replica said
        results.put(traceback.format_exc())


def test_replicas_started_at_once_on_an_empty_database_all_come_up(postgres_server: str) -> None:
    url = fresh_database(postgres_server)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(REPLICAS)
    results = context.Queue()
    processes = [
        context.Process(target=_start_replica, args=(url, barrier, results)) for _ in range(REPLICAS)
    ]
    for process in processes:
        process.start()
    said = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(30)
    failures = [s for s in said if s != "ok"]
    assert not failures, f"{len(failures)} of {REPLICAS} replicas failed to start:\n" + failures[0]
    engine = create_engine(url)
    tables = set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        versions = conn.execute(text("SELECT version FROM schema_version ORDER BY version")).scalars().all()
    engine.dispose()
    assert {"pending_actions", "schedule_runs", "leases", "delivered", "apscheduler_jobs"} <= tables
    from bot.state.schema import MIGRATIONS

    assert versions == [v for v, _, _ in MIGRATIONS], "each step applied once"


# --- the scheduler lease --------------------------------------------------------------------------
LEASE = 1.5  # seconds: short, so that takeovers happen within a test


class Timeline:
    """When each replica started and stopped leading, by the test's clock."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, str]] = []
        self.changed = threading.Condition()

    def replica(self, url: str, name: str) -> Leadership:
        engine = make_engine(url)
        migrate(engine)
        leadership = Leadership(
            Lease(engine, "scheduler", name, LEASE),
            on_gain=lambda: self._note(name, "gain"),
            on_loss=lambda: self._note(name, "loss"),
        )
        leadership.start()
        return leadership

    def _note(self, name: str, what: str) -> None:
        with self.changed:
            self.events.append((time.monotonic(), name, what))
            self.changed.notify_all()

    def wait_for(self, name: str, what: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                found = [t for t, n, w in self.events if n == name and w == what]
                if found:
                    return found[-1]
                left = deadline - time.monotonic()
                assert left > 0, f"{name} did not {what} the lease within {timeout} s: {self.events}"
                self.changed.wait(left)

    def leaders_over_time(self) -> int:
        """The most replicas that led at one moment."""
        leading: set[str] = set()
        most = 0
        for _, name, what in sorted(self.events):
            (leading.add if what == "gain" else leading.discard)(name)
            most = max(most, len(leading))
        return most


def test_one_replica_leads_and_another_takes_over_when_it_hands_the_lease_back(postgres_server: str) -> None:
    url = fresh_database(postgres_server)
    timeline = Timeline()
    first = timeline.replica(url, "a")
    timeline.wait_for("a", "gain", 10)
    second = timeline.replica(url, "b")
    time.sleep(LEASE * 2)  # several renewals: b never leads while a does
    assert [n for _, n, w in timeline.events if w == "gain"] == ["a"]
    stopped = time.monotonic()
    first.stop()  # a clean shutdown hands the lease back
    took = timeline.wait_for("b", "gain", LEASE * 2) - stopped
    assert took < LEASE, f"b took over {took:.2f} s after a handed the lease back"
    assert timeline.leaders_over_time() == 1
    second.stop()


def test_a_partitioned_leader_stops_before_another_replica_starts(postgres_server: str) -> None:
    host, port = postgres_server.split("@")[1].split("/")[0].split(":")
    proxy = TcpProxy(host, int(port))
    url = fresh_database(postgres_server)
    timeline = Timeline()
    behind_proxy = timeline.replica(url.replace(f":{port}/", f":{proxy.port}/"), "a")
    timeline.wait_for("a", "gain", 10)
    direct = timeline.replica(url, "b")
    time.sleep(LEASE)
    proxy.cut()
    cut = time.monotonic()
    lost = timeline.wait_for("a", "loss", LEASE * 2)
    gained = timeline.wait_for("b", "gain", LEASE * 3)
    assert lost < gained, f"a stopped leading {lost - gained:.2f} s after b started"
    assert gained - cut < LEASE * 1.5, "b took over within the lease time (and a third)"
    proxy.heal()  # a reaches the database again, and finds b holding the lease
    time.sleep(LEASE * 2)
    assert timeline.leaders_over_time() == 1, timeline.events
    assert direct.leading and not behind_proxy.leading
    direct.stop()
    behind_proxy.stop()
    proxy.close()


class Quiet:
    def post(self, channel: str, message: Message) -> None:
        pass


def test_two_replicas_background_one_runs_the_scheduler_and_the_gauge_says_which(
    settings: Settings, engine: Engine, postgres_server: str
) -> None:
    url = fresh_database(postgres_server)
    replicas = {}
    for name in ("r1", "r2"):
        replica = settings.model_copy(update={"database_url": url, "replica": name, "lease_seconds": LEASE})
        replicas[name] = build_services(replica, COMMANDS)
        start_background(replicas[name], Quiet())

    def held() -> dict[str, float]:
        return {
            n: metrics.REGISTRY.get_sample_value("dockerbot_scheduler_lease_held", {"replica": n})
            for n in replicas
        }

    def leader() -> str:
        deadline = time.monotonic() + LEASE * 3
        while sorted(held().values()) != [0, 1]:
            assert time.monotonic() < deadline, f"no single leader: {held()}"
            time.sleep(0.05)
        return max(held(), key=lambda n: held()[n])

    first = leader()
    other = "r2" if first == "r1" else "r1"
    assert replicas[first].scheduler.aps.state == STATE_RUNNING
    assert replicas[other].scheduler.aps.state == STATE_PAUSED
    # A follower serves schedule commands: what it adds is in the shared job store.
    added = replicas[other].scheduler.add(
        "cleanup",
        "0 3 * * *",
        timezone="UTC",
        channel="C1",
        host="local",
        params={"policy": "dangling"},
        created_by="U1",
    )
    assert replicas[first].scheduler.get(added.id).next_run is not None
    replicas[first].stop_background()
    replicas[first].close()
    assert leader() == other and held()[first] == 0
    assert replicas[other].scheduler.aps.state == STATE_RUNNING
    replicas[other].stop_background()
    replicas[other].close()


# --- deliveries taken once across replicas ----------------------------------------------------------
class Recorder:
    """A Dispatch that notes what it was handed to run."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    def command(self, body: dict[str, Any]) -> None:
        self.ran.append(body["trigger_id"])

    def button(self, body: dict[str, Any]) -> None:
        self.ran.append(body["trigger_id"])

    def home_opened(self, user: str) -> None:
        self.ran.append(user)


def _deliver_at_once(body: str, deliveries: list[tuple[Any, dict[str, str]]]) -> list[int]:
    """Each (app, headers) delivery of `body`, all released at the same moment; their statuses."""
    barrier = threading.Barrier(len(deliveries))
    statuses: list[int] = []

    def deliver(app: Any, headers: dict[str, str]) -> None:
        barrier.wait()
        request = BoltRequest(body=body, headers={k.lower(): [v] for k, v in headers.items()})
        statuses.append(app.dispatch(request).status)

    threads = [threading.Thread(target=deliver, args=d) for d in deliveries]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def test_a_retried_request_runs_once_whichever_replica_it_reaches(
    settings: Settings, fake_slack: FakeSlack, postgres_server: str
) -> None:
    url = fresh_database(postgres_server)
    migrate(make_engine(url))
    settings = settings.model_copy(update={"slack_api_url": fake_slack.api_url})
    recorders = [Recorder(), Recorder()]
    apps = [
        create_app(settings, recorder, deliveries=Deliveries(make_engine(url), keep=REPLAY_WINDOW))
        for recorder in recorders
    ]
    triggers = []
    for n in range(20):
        body = slash_command_body("help", response_url=fake_slack.response_url(f"r{n}"))
        triggers.append(parse_qs(body)["trigger_id"][0])
        first = signed_headers(body, SIGNING_SECRET)
        retry = {**signed_headers(body, SIGNING_SECRET, int(time.time()) + 1), "X-Slack-Retry-Num": "1"}
        # The first delivery and Slack's retry (its own signature), on both replicas at once.
        deliveries = [(apps[0], first), (apps[1], first), (apps[1], retry), (apps[0], retry)]
        statuses = _deliver_at_once(body, deliveries)
        assert statuses == [200] * len(deliveries), "every delivery is acknowledged"
    ran = recorders[0].ran + recorders[1].ran
    assert sorted(ran) == sorted(triggers), "each command ran exactly once across the two replicas"
    assert recorders[0].ran and recorders[1].ran, "both replicas took some"
