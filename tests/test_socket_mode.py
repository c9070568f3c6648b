"""The bot over Socket Mode: envelopes over a real websocket, acked within 3 s, answered after."""

from __future__ import annotations

import time

from tests.fakes.slack import FakeSlack
from tests.fakes.slack_requests import slash_command_payload


def _help(fake: FakeSlack, tag: str) -> float:
    payload = slash_command_payload("help", response_url=fake.response_url(tag))
    started = time.monotonic()
    envelope_id = fake.send_envelope("slash_commands", payload)
    fake.wait_for_ack(envelope_id, timeout=3)
    ack_seconds = time.monotonic() - started
    [call] = fake.wait_for("response_url", lambda c: c.tag == tag)
    assert "dockerbot commands" in call.body["text"]
    return ack_seconds


def test_help_envelope_is_acked_then_answered(slack_socket: FakeSlack) -> None:
    assert _help(slack_socket, "first") < 3


def test_reconnects_after_disconnect_and_keeps_serving(slack_socket: FakeSlack) -> None:
    _help(slack_socket, "before")
    slack_socket.send_disconnect("refresh_requested")
    deadline = time.monotonic() + 15
    while slack_socket.connections < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert slack_socket.connections >= 2
    slack_socket.wait_connected()
    _help(slack_socket, "after")
