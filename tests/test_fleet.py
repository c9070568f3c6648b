"""One bot over several real engines: --host, @host, --host all, /docker hosts, fleet summaries.

Three engines run at once: the session's, a second on its own socket, and a third reached
over tcp://127.0.0.1 with TLS client certificates made for this test.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from bot.core.commands import Command
from bot.core.router import Router
from bot.core.services import Services, build_services
from bot.core.settings import Settings
from bot.engine.hosts import DockerHost
from bot.jobs.scheduler import Scheduler
from bot.render.messages import Message
from bot.render.text import render
from bot.sandbox import Engine, Sandbox, make_tls
from bot.state.delivery import Delivery
from handlers import COMMANDS
from tests.chat import ChatBot


@pytest.fixture(scope="module")
def fleet(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    certs = tmp_path_factory.mktemp("certs")
    server, client = make_tls(certs)
    two = sandbox.add_engine("two")
    three = sandbox.add_engine("three", tcp_tls=server)
    config = {
        "default_host": "one",
        "hosts": {
            "one": {"url": sandbox.engine.docker_host},
            "two": {"url": two.docker_host},
            "three": {
                "url": three.tcp_host,
                "tls": {"ca": str(client.ca), "cert": str(client.cert), "key": str(client.key)},
            },
        },
    }
    yield {"config": config, "two": two, "three": three}
    for engine in (three, two):
        engine.stop()


@pytest.fixture
def fleet_services(settings: Settings, fleet: dict, tmp_path: Path) -> Iterator[Services]:
    path = tmp_path / "dockerbot.yml"
    path.write_text(yaml.safe_dump(fleet["config"], sort_keys=False))
    services = build_services(settings.model_copy(update={"config": path, "host_timeout": 10}), COMMANDS)
    yield services
    services.close()


@pytest.fixture
def chat(fleet_services: Services) -> ChatBot:
    return ChatBot(Router(fleet_services))


def test_hosts_lists_every_engine_with_its_facts(chat: ChatBot, fleet: dict, engine: Engine) -> None:
    out = chat("hosts")
    assert "3 Docker hosts, 3 up" in out
    version = engine.cli("version", "--format", "{{.Server.Version}}").stdout.strip()
    for name in ("one (default)", "two", "three"):
        line = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert version in line and "overlay2" in line and " up " in line


def test_host_flag_and_at_prefix_pick_the_engine(chat: ChatBot, fleet: dict, engine: Engine) -> None:
    two: Engine = fleet["two"]
    three: Engine = fleet["three"]
    two.cli("pull", "redis:7")
    three_tls_only = three.cli("pull", "alpine")
    assert three_tls_only.returncode == 0
    assert "redis" in chat("images --host two")
    assert "redis" not in chat("images --host three")
    assert "alpine" in chat("@three images")  # over tcp:// with TLS client certificates
    assert "Unknown host nowhere. Known hosts: one, two, three." in chat("images --host nowhere")


def test_host_all_reads_every_engine_in_one_reply(chat: ChatBot, fleet: dict) -> None:
    fleet["two"].cli("pull", "redis:7")
    out = chat("images --host all")
    assert "/docker images on 3 hosts" in out
    assert "3 of 3 hosts answered" in out
    for name in ("one", "two", "three"):
        assert f"\n{name}\n" in out


def test_writes_refuse_host_all(chat: ChatBot, fleet: dict) -> None:
    out = chat("pull --host all busybox")
    assert "runs on one host at a time" in out


def test_a_dead_host_is_reported_and_never_delays_the_others(chat: ChatBot, fleet: dict) -> None:
    two: Engine = fleet["two"]
    two.stop()
    try:
        started = time.monotonic()
        out = chat("images --host all")
        assert time.monotonic() - started < 10
        assert "2 of 3 hosts answered" in out
        assert "two — Cannot reach the Docker engine on host two" in out
        assert "3 Docker hosts, 2 up" in chat("hosts")
    finally:
        two.start()


def _reclaiming(services: Services, host: DockerHost, params: dict) -> Message:
    count = len(host.api.images())
    return Message(text=f"{count} images checked on {host.name}", facts={"reclaimed": 1000 * count})


def _reclaiming_in_fleet(services: Services, host: DockerHost, params: dict) -> Message:
    message = _reclaiming(services, host, params)
    return Message(text=message.text + " (its fleet part)", facts=message.facts)


class _Recorder:
    def __init__(self) -> None:
        self.posted: list[Message] = []

    def post(self, channel: str, message: Message) -> None:
        self.posted.append(message)


def test_a_fleet_schedule_posts_one_summary_with_a_row_per_host(
    fleet_services: Services, fleet: dict
) -> None:
    recorder = _Recorder()
    fleet_services.commands = [
        *fleet_services.commands,
        Command(
            name="fleetprobe",
            summary="",
            example="",
            run=lambda req, reply: None,
            scheduled=_reclaiming,
            scheduled_in_fleet=_reclaiming_in_fleet,
        ),
    ]
    scheduler = Scheduler(fleet_services, Delivery(fleet_services.store.engine, recorder))
    scheduler.start()
    two: Engine = fleet["two"]
    try:
        schedule = scheduler.add(
            "fleetprobe", "0 3 * * *", timezone="UTC", channel="C1", host="all", params={}, created_by="U1"
        )
        two.stop()
        scheduler.run(schedule.id)
        [summary] = recorder.posted
        text = render(summary)
        assert summary.text == "Scheduled fleetprobe on 3 hosts: 2 ok, 1 failed"
        rows = {
            line.split()[0]: line
            for line in text.splitlines()
            if line.split()[:1] in (["one"], ["two"], ["three"])
        }
        assert list(rows) == ["one", "two", "three"], "one row per host, hostname first"
        assert rows["two"].split()[1] == "FAILED" and rows["one"].split()[1] == "ok"
        assert rows["one"].endswith("images checked on one (its fleet part)"), "Command.scheduled_in_fleet"
        assert summary.files and "== one ==" in str(summary.files[0].content)
    finally:
        two.start()
        scheduler.shutdown()
