"""Operating the bot: /readyz follows the engine, /metrics counts commands, SIGTERM ends cleanly,
and the worker process is supervised."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from bot.engine.hosts import DockerHost
from bot.sandbox import Engine
from bot.slack.http import Readiness
from tests.botprocess import alive, start_bot, worker_pid
from tests.conftest import SIGNING_SECRET, SlackHttpBot
from tests.fakes.registry import FakeRegistry
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_requests import post_signed, slash_command_body, slash_command_payload

T = TypeVar("T")
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _get(url: str) -> tuple[int, bytes]:
    try:
        with _OPENER.open(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_readyz_flips_with_the_engine(slack_http: SlackHttpBot, engine: Engine) -> None:
    url = slack_http.health + "/readyz"
    status, body = _get(url)
    assert status == 200 and json.loads(body) == {"ready": True, "engine": True, "slack": True}
    engine.stop()
    try:
        time.sleep(1.1)  # readiness is cached for a second
        status, body = _get(url)
        assert status == 503 and json.loads(body)["engine"] is False
    finally:
        engine.start()
    time.sleep(1.1)
    assert _get(url)[0] == 200


def test_metrics_count_a_command_run_through_slack(slack_http: SlackHttpBot) -> None:
    url = slack_http.health + "/metrics"

    def help_count() -> float:
        text = _get(url)[1].decode()
        for line in text.splitlines():
            if line.startswith('dockerbot_commands_total{command="help",outcome="ok"}'):
                return float(line.split()[-1])
        return 0.0

    before = help_count()
    assert slack_http.command("help", tag="metrics")[0] == 200
    slack_http.slack.wait_for("response_url", lambda c: c.tag == "metrics")
    deadline = time.monotonic() + 5  # counted just after the reply is sent
    while help_count() < before + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert help_count() == before + 1
    acks = [
        line for line in _get(url)[1].decode().splitlines() if line.startswith("dockerbot_ack_seconds_count")
    ]
    assert acks and float(acks[0].split()[-1]) >= 1, "the ack was timed"


def test_sigterm_during_a_pull_ends_cleanly_and_says_so(
    engine: Engine, fake_slack: FakeSlack, fake_registry: FakeRegistry, tmp_path: Path
) -> None:
    fake_registry.stall_blobs = True  # the pull starts, then waits for layers forever
    bot = start_bot(engine, fake_slack, tmp_path, DOCKERBOT_OPERATORS="U111")
    try:
        body = slash_command_body(
            f"pull {fake_registry.address}/library/ubuntu:latest",
            response_url=fake_slack.response_url("pull"),
        )
        assert post_signed(bot.url, body, SIGNING_SECRET)[0] == 200
        fake_slack.wait_for("chat.postMessage", timeout=60)
        time.sleep(0.5)
        bot.proc.send_signal(signal.SIGTERM)
        assert bot.proc.wait(timeout=60) == 0
    finally:
        if bot.proc.poll() is None:
            bot.proc.kill()
    [last] = fake_slack.calls("chat.update", ok=True)[-1:] or fake_slack.calls("response_url")[-1:]
    assert "interrupted" in str(last.body), last.body
    assert "Traceback" not in bot.logs()
    with sqlite3.connect(tmp_path / "dockerbot.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def _help_count(metrics_url: str) -> float:
    for line in _get(metrics_url)[1].decode().splitlines():
        if line.startswith('dockerbot_commands_total{command="help",outcome="ok"}'):
            return float(line.split()[-1])
    return 0.0


def _until(check: Callable[[], T], timeout: float = 30) -> T:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return found


def test_the_served_bot_survives_its_worker_and_never_outlives_itself(
    engine: Engine, fake_slack: FakeSlack, fake_registry: FakeRegistry, tmp_path: Path
) -> None:
    fake_registry.stall_blobs = True  # a pull that starts, then waits for its layers
    bot = start_bot(engine, fake_slack, tmp_path, DOCKERBOT_OPERATORS="U111")
    base = bot.health
    try:
        first = worker_pid(bot)
        assert first is not None and alive(first)
        assert json.loads(_get(base + "/readyz")[1]) == {
            "ready": True,
            "engine": True,
            "slack": True,
            "worker": True,
        }

        def ask(tag: str) -> None:
            body = slash_command_body("help", response_url=fake_slack.response_url(tag))
            assert post_signed(bot.url, body, SIGNING_SECRET)[0] == 200
            fake_slack.wait_for("response_url", lambda c: c.tag == tag, timeout=30)

        # Commands run in the worker, acks in the front: /metrics sums both processes.
        ask("before")
        _until(lambda: _help_count(base + "/metrics") == 1)
        assert "dockerbot_ack_seconds_count 1.0" in _get(base + "/metrics")[1].decode()

        # A pull under way when the worker dies: its user is told, nobody else is.
        body = slash_command_body(
            f"pull {fake_registry.address}/library/ubuntu:latest",
            response_url=fake_slack.response_url("pull"),
        )
        assert post_signed(bot.url, body, SIGNING_SECRET)[0] == 200
        [progress] = fake_slack.wait_for("chat.postMessage", timeout=60)
        time.sleep(0.5)  # the worker tells the front of the message once Slack's answer is back (ms)
        os.kill(first, signal.SIGKILL)
        [notice] = fake_slack.wait_for("response_url", lambda c: c.tag == "pull", timeout=30)
        assert "worker process stopped while running `/docker pull" in notice.body["text"]
        assert notice.body["response_type"] == "ephemeral"
        # ... and the pull's message in the channel no longer says it is pulling.
        channel, ts = progress.response["channel"], progress.response["ts"]
        fake_slack.wait_for("chat.update", lambda c: c.body.get("ts") == ts and "Interrupted" in str(c.body))
        assert fake_slack.message(channel, ts)["text"].startswith(":warning: Interrupted: the bot's worker")
        assert [c.tag for c in fake_slack.calls("response_url")].count("before") == 1
        second = _until(
            lambda: (pid := worker_pid(bot)) != first and pid and _get(base + "/readyz")[0] == 200 and pid
        )
        assert bot.proc.poll() is None, "the front process stayed up"
        ask("after")
        _until(lambda: _help_count(base + "/metrics") == 2)  # the dead worker's count is kept
        assert "restarting it" in bot.logs()

        bot.proc.send_signal(signal.SIGKILL)  # a crash of the front: its worker must not live on
        bot.proc.wait(10)
        _until(lambda: not alive(second), timeout=10)
    finally:
        if bot.proc.poll() is None:
            bot.proc.kill()


@pytest.mark.parametrize("elsewhere", [False, True], ids=["python -m bot", "a launcher elsewhere"])
def test_socket_mode_as_deployed_acks_and_answers(
    engine: Engine, fake_slack: FakeSlack, tmp_path: Path, elsewhere: bool
) -> None:
    """`python -m bot serve` with an app token: the front process holds the websocket and acks,
    the worker answers on the response_url; /readyz reports the connection and the worker. Also
    when the bot was started from another directory: the worker finds the same code."""
    bot = start_bot(engine, fake_slack, tmp_path, socket_mode=True, elsewhere=elsewhere)
    try:
        fake_slack.wait_connected(timeout=30)
        payload = slash_command_payload("help", response_url=fake_slack.response_url("socket"))
        fake_slack.wait_for_ack(fake_slack.send_envelope("slash_commands", payload, timeout=10), timeout=10)
        [reply] = fake_slack.wait_for("response_url", lambda c: c.tag == "socket", timeout=30)
        assert "/docker images" in str(reply.body)
        ready = _until(
            lambda: _get(bot.url + "/readyz")[0] == 200 and json.loads(_get(bot.url + "/readyz")[1])
        )
        assert ready == {"ready": True, "engine": True, "slack": True, "worker": True}
        fake_slack.close_connections()  # as Slack does before a restart; then SIGTERM ends it cleanly
        bot.proc.send_signal(signal.SIGTERM)
        assert bot.proc.wait(timeout=30) == 0
    finally:
        if bot.proc.poll() is None:
            bot.proc.kill()
    assert "Traceback" not in bot.logs()


def test_requests_the_worker_never_finished_are_answered(fake_slack: FakeSlack) -> None:
    from bot.runtime.worker import _tell_interrupted

    lost = [
        ("command", {"text": "images --all", "response_url": fake_slack.response_url("cmd")}),
        ("button", {"response_url": fake_slack.response_url("btn")}),
        ("command", {"text": "help"}),  # no response_url: nobody to tell
    ]
    _tell_interrupted(lost, shutting_down=True)
    said = {c.tag: c.body["text"] for c in fake_slack.calls("response_url")}
    again = ": run it again when it is back."
    assert said == {
        "cmd": ":warning: The bot shut down before it finished `/docker images --all`" + again,
        "btn": ":warning: The bot shut down before it finished your button press" + again,
    }


def test_readiness_is_cached_for_a_second() -> None:
    now = [100.0]
    calls: list[int] = []
    down = DockerHost(name="down", url="unix:///nonexistent/dockerbot-readiness.sock")
    ready = Readiness(down, clock=lambda: now[0], worker=lambda: bool(calls.append(1)) or True)
    assert ready() == {"engine": False, "slack": True, "worker": True}
    now[0] += 0.9
    ready()
    assert len(calls) == 1, "asked again within the second"
    now[0] += 0.2
    ready()
    assert len(calls) == 2
