"""`--host all` over many hosts, some slow and some that never answer.

Every host is the session's real engine behind its own loopback proxy (tests/fakes/latency_proxy.py)
that adds a round-trip time, or that accepts connections and never answers. The engine client's own
timeout is long here (600 s), so only the fleet's deadline (DOCKERBOT_HOST_TIMEOUT) can end a wait.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from bot.core.router import Router
from bot.core.services import Services, build_services
from bot.core.settings import Settings
from bot.engine.fleet import fan_out_answering
from bot.engine.hosts import DockerHost
from bot.jobs.report import build_report
from bot.jobs.scheduler import Scheduler
from bot.render.messages import Message
from bot.render.text import render
from bot.sandbox import Engine, Sandbox
from bot.state.delivery import Delivery
from handlers import COMMANDS
from tests.chat import ChatBot
from tests.conftest import SlackHttpBot
from tests.fakes.latency_proxy import LatencyProxies

HOST_TIMEOUT = 2


@pytest.fixture(scope="module")
def proxies(sandbox: Sandbox) -> Iterator[LatencyProxies]:
    proxies = LatencyProxies(str(sandbox.engine.socket))
    yield proxies
    proxies.close()  # also ends the connections the dead hosts' threads still wait on


def fleet_services(
    settings: Settings, tmp_path: Path, hosts: dict[str, str], **overrides: object
) -> Services:
    path = tmp_path / "dockerbot.yml"
    path.write_text(yaml.safe_dump({"hosts": {name: {"url": url} for name, url in hosts.items()}}))
    update = {"config": path, "host_timeout": HOST_TIMEOUT, "docker_timeout": 600, **overrides}
    return build_services(settings.model_copy(update=update), COMMANDS)


@pytest.fixture
def small_fleet(proxies: LatencyProxies) -> dict[str, str]:
    """Three live hosts 20–100 ms away, and two that never answer, in between."""
    return {
        "near": proxies.live(0.02).url,
        "silent1": proxies.dead().url,
        "mid": proxies.live(0.05).url,
        "silent2": proxies.dead().url,
        "far": proxies.live(0.1).url,
    }


@pytest.fixture
def chat(
    settings: Settings, tmp_path: Path, small_fleet: dict[str, str], engine: Engine
) -> Iterator[ChatBot]:
    engine.cli("pull", "busybox")
    services = fleet_services(settings, tmp_path, small_fleet)
    yield ChatBot(Router(services))
    services.close()


def test_host_all_names_every_host_and_the_ones_that_never_answered(chat: ChatBot) -> None:
    for command in ("images", "report now"):
        out = chat(f"{command} --host all")
        assert f"/docker {command.split()[0]} on 5 hosts" in out
        assert "3 of 5 hosts answered" in out
        for name in ("near", "mid", "far"):
            assert f"\n{name}\n" in out
        for name in ("silent1", "silent2"):
            assert f"{name} — did not answer within {HOST_TIMEOUT} s" in out
    assert "busybox" in chat("images --host far")


def test_live_hosts_answer_even_behind_more_dead_hosts_than_threads(
    settings: Settings, tmp_path: Path, proxies: LatencyProxies, engine: Engine
) -> None:
    """Dead hosts listed first once took every thread of the fan-out (32), and the live hosts
    queued behind them were reported as not answering."""
    engine.cli("pull", "busybox")
    hosts = {f"dead{i:02d}": proxies.dead().url for i in range(60)}
    hosts |= {"live1": proxies.live(0.01).url, "live2": proxies.live(0.01).url}
    services = fleet_services(settings, tmp_path, hosts)
    try:
        out = ChatBot(Router(services))("images --host all")
    finally:
        services.close()
    assert "2 of 62 hosts answered" in out
    lines = dict(line.split(": ", 1) for line in out.splitlines() if line.startswith(("live", "dead")))
    count = len(engine.cli("images", "-q").stdout.split())  # both are the session's engine
    for name in ("live1", "live2"):
        assert lines[name].startswith(f"docker images on {name}: {count} image")
    assert lines["dead00"] == f"did not answer within {HOST_TIMEOUT} s"


def test_a_fleet_report_draws_no_charts_it_would_not_show(chat: ChatBot) -> None:
    services = chat.services
    host = services.hosts.get("near")
    assert [f.name for f in build_report(services, host).files] == ["disk-usage-near.png"]
    assert build_report(services, host, chart=False).files == []
    # and a report schedule over several hosts runs its chart-less part on each
    [report] = [c for c in services.commands if c.name == "report"]
    assert report.scheduled is not None and report.scheduled_in_fleet is not None
    assert [f.name for f in report.scheduled(services, host, {}).files] == ["disk-usage-near.png"]
    assert report.scheduled_in_fleet(services, host, {}).files == []


class _Recorder:
    def __init__(self) -> None:
        self.posted: list[Message] = []

    def post(self, channel: str, message: Message) -> None:
        self.posted.append(message)


def test_a_fleet_cleanup_schedule_names_a_host_that_never_answers(
    settings: Settings, tmp_path: Path, small_fleet: dict[str, str], engine: Engine
) -> None:
    # A run's own deadline is long (a big cleanup may take a while); a host that does not answer
    # at all is known after the host timeout.
    services = fleet_services(settings, tmp_path, small_fleet, fleet_run_timeout=300)
    recorder = _Recorder()
    scheduler = Scheduler(services, Delivery(services.store.engine, recorder))
    scheduler.start(paused=True)
    try:
        made = scheduler.add(
            "cleanup", "0 3 * * *", timezone="UTC", channel="C1", host="all", params={}, created_by="U1"
        )
        scheduler.run(made.id)
    finally:
        scheduler.shutdown(wait=False)
        services.close()
    [summary] = recorder.posted
    assert summary.text == "Scheduled cleanup on 5 hosts: 3 ok, 2 failed"
    rows = {
        words[0]: words[1:]
        for words in (line.split(None, 2) for line in render(summary).splitlines())
        if words
    }
    assert [rows[name][0] for name in small_fleet] == ["ok", "FAILED", "ok", "FAILED", "ok"]
    assert rows["silent1"][1].strip() == f"did not answer within {HOST_TIMEOUT} s"


@pytest.fixture
def services(
    settings: Settings, tmp_path: Path, proxies: LatencyProxies, engine: Engine
) -> Iterator[Services]:
    """(For slack_http.) A hundred hosts: 95 live, 5 that never answer."""
    engine.cli("pull", "busybox")
    hosts = {f"h{i:03d}": (proxies.dead() if i % 20 == 7 else proxies.live(0)).url for i in range(100)}
    services = fleet_services(settings, tmp_path, hosts)
    yield services
    services.close()


def test_a_hundred_host_reply_stays_within_slacks_limits(slack_http: SlackHttpBot) -> None:
    """One reply: a line per host in the message, everything in an attached file. The fake Slack
    refuses (and fails the test on) anything real Slack would refuse."""
    slack = slack_http.slack
    reply = json.loads(slack_http.ask("images --host all", user="U111", channel="C111", tag="fleet"))
    assert "95 of 100 hosts answered" in reply["text"]
    shown = "\n".join(b.get("text", {}).get("text", "") for b in reply["blocks"])
    for i in range(100):
        assert f"h{i:03d}: " in shown
    assert "h007: did not answer within 2 s" in shown
    [upload] = slack.wait_for("files.completeUploadExternal", timeout=10)
    assert upload.ok and "C111" in json.dumps(upload.body)


def test_a_host_given_up_on_never_starts_its_work_later() -> None:
    """A fleet schedule reports a host that did not answer its probe in time as silent; if it
    answers later, its run (a cleanup that removes images) must not start, unreported."""
    slow, quick = DockerHost("slow"), DockerHost("quick")
    release, worked = threading.Event(), threading.Event()
    ran: list[str] = []

    def probe(host: DockerHost) -> None:
        if host.name == "slow":
            release.wait(30)

    def work(host: DockerHost) -> str:
        ran.append(host.name)
        worked.set()
        return f"done on {host.name}"

    results, silent = fan_out_answering([slow, quick], work, 30, probe=probe, probe_timeout=0.2)
    assert silent == {"slow"}
    assert [(r.host, r.ok, r.value) for r in results] == [
        ("slow", False, None),
        ("quick", True, "done on quick"),
    ]
    worked.clear()
    release.set()  # the slow host answers after all
    assert not worked.wait(1)
    assert ran == ["quick"]
