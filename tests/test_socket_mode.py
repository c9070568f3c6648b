"""The bot over Socket Mode: envelopes over a real websocket, acked within 3 s, answered after."""

from __future__ import annotations

import time

from tests.fakes.slack import FakeSlack
from tests.fakes.slack_requests import app_home_opened_payload, slash_command_payload


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


def test_a_redelivered_envelope_is_acked_but_runs_once(slack_socket: FakeSlack) -> None:
    payload = slash_command_payload(
        "help", response_url=slack_socket.response_url("again"), trigger_id="42.4242.redelivered"
    )
    first = slack_socket.send_envelope("slash_commands", payload)
    slack_socket.wait_for_ack(first, timeout=3)
    second = slack_socket.send_envelope("slash_commands", payload, retry_attempt=1, retry_reason="timeout")
    slack_socket.wait_for_ack(second, timeout=3)
    slack_socket.wait_for("response_url", lambda c: c.tag == "again")
    time.sleep(0.5)
    assert len([c for c in slack_socket.calls("response_url") if c.tag == "again"]) == 1


def test_a_retried_event_is_handled_once(slack_socket: FakeSlack) -> None:
    payload = app_home_opened_payload(event_id="EvSame")
    for attempt in range(3):
        envelope = slack_socket.send_envelope("events_api", payload, retry_attempt=attempt)
        slack_socket.wait_for_ack(envelope, timeout=3)
    slack_socket.wait_for("views.publish", timeout=20)
    time.sleep(0.5)
    assert len(slack_socket.calls("views.publish")) == 1


def test_a_burst_of_envelopes_is_acked_and_answered_once_each(slack_socket: FakeSlack) -> None:
    _help(slack_socket, "warm")  # authorized: from here envelopes are dispatched in the reader thread
    payloads = {
        f"burst-{i}": slash_command_payload("help", response_url=slack_socket.response_url(f"burst-{i}"))
        for i in range(40)
    }
    sent = {slack_socket.send_envelope("slash_commands", payload): tag for tag, payload in payloads.items()}
    for envelope_id in sent:
        assert slack_socket.wait_for_ack(envelope_id, timeout=5) == {"envelope_id": envelope_id}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        tags = [c.tag for c in slack_socket.calls("response_url") if c.tag.startswith("burst-")]
        if len(set(tags)) == len(sent):
            break
        time.sleep(0.1)
    time.sleep(0.5)
    tags = sorted(c.tag for c in slack_socket.calls("response_url") if c.tag.startswith("burst-"))
    assert tags == sorted(sent.values())  # every command answered, none twice
    assert len(slack_socket.acks) == len(set(a["envelope_id"] for a in slack_socket.acks))  # one ack each
