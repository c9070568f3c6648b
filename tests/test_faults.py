"""Faults: the engine dying mid-pull, Slack refusing replies, the Socket Mode connection dropping."""

from __future__ import annotations

import threading
import time

from bot.core.router import Router
from bot.sandbox import Engine, Sandbox
from tests.chat import ChatBot
from tests.conftest import SlackHttpBot
from tests.fakes.registry import FakeRegistry
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_requests import slash_command_payload


def test_engine_killed_mid_pull_says_why_and_the_bot_carries_on(
    router: Router, engine: Engine, sandbox: Sandbox, fake_registry: FakeRegistry
) -> None:
    fake_registry.stall_blobs = True  # the pull has begun and waits for its layers
    chat = ChatBot(router)
    outputs: list[str] = []
    pulling = threading.Thread(
        target=lambda: outputs.append(chat(f"pull {fake_registry.address}/library/ubuntu:latest"))
    )
    pulling.start()
    deadline = time.monotonic() + 20
    while not fake_registry.requests("blobs") and time.monotonic() < deadline:
        time.sleep(0.05)
    engine.kill()  # SIGKILL: no goodbye to anyone
    try:
        pulling.join(30)
        assert not pulling.is_alive(), "the pull ended instead of hanging"
        out = outputs[0]
        assert "The engine closed the connection before the pull finished" in out or "Cannot reach" in out, (
            out
        )
        assert "Traceback" not in out
    finally:
        fake_registry.stall_blobs = False
        engine.start()
    assert "Status: " in chat("pull busybox"), "the next command works once the engine is back"


def test_replies_arrive_once_through_429_and_500(slack_http: SlackHttpBot) -> None:
    slack_http.slack.fail("response_url", status=429, retry_after=1, times=1)
    slack_http.slack.fail("response_url", status=500, times=1)
    assert slack_http.command("help", tag="flaky")[0] == 200
    attempts = slack_http.slack.wait_for("response_url", lambda c: c.tag == "flaky", count=3, timeout=15)
    assert [c.status for c in attempts] == [429, 500, 200]
    time.sleep(1)
    assert len([c for c in slack_http.slack.calls("response_url", ok=True) if c.tag == "flaky"]) == 1


def test_socket_mode_reconnects_after_a_dropped_connection(slack_socket: FakeSlack) -> None:
    slack_socket.drop_connection("reset")
    slack_socket.wait_connected(timeout=30, connections=2)
    payload = slash_command_payload("help", response_url=slack_socket.response_url("back"))
    envelope = slack_socket.send_envelope("slash_commands", payload)
    slack_socket.wait_for_ack(envelope, timeout=5)
    slack_socket.wait_for("response_url", lambda c: c.tag == "back")


def test_a_reply_slack_keeps_refusing_is_counted_and_the_bot_carries_on(slack_http: SlackHttpBot) -> None:
    from bot.metrics import SLACK_API_ERRORS

    before = SLACK_API_ERRORS.labels("response_url")._value.get()
    slack_http.slack.fail("response_url", status=500, times=10)  # more than the retries
    assert slack_http.command("help", tag="lost")[0] == 200
    deadline = time.monotonic() + 30
    while SLACK_API_ERRORS.labels("response_url")._value.get() == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert SLACK_API_ERRORS.labels("response_url")._value.get() == before + 1
    slack_http.slack.clear_faults()
    assert slack_http.command("help", tag="later")[0] == 200
    slack_http.slack.wait_for("response_url", lambda c: c.tag == "later" and c.ok)
