"""Build and send requests the way Slack sends them to an app (HTTP mode and Socket Mode payloads).

Field sets and encodings follow /work/shared/reference/slack-platform.md §1.1-1.3 and bolt-python's
own scenario tests. Bodies are ``application/x-www-form-urlencoded`` strings; sign the *exact*
string you send.
"""

from __future__ import annotations

import http.client
import itertools
import json
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

from slack_sdk.signature import SignatureVerifier

__all__ = [
    "block_actions_body",
    "block_actions_payload",
    "post_signed",
    "signed_headers",
    "slash_command_body",
    "slash_command_payload",
]

TEAM_DOMAIN = "test-domain"
APP_ID = "A111"
VERIFICATION_TOKEN = "verification_token"
SLACK_USER_AGENT = "Slackbot 1.0 (+https://api.slack.com/robots)"


_TRIGGERS = itertools.count(1)


def new_trigger_id() -> str:
    """Slack gives every invocation its own trigger_id; the bot relies on it to spot redeliveries."""
    return f"{next(_TRIGGERS)}.{time.time_ns()}.fake"


def signed_headers(body: str, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """Headers Slack adds to a request: ``X-Slack-Signature`` (v0 HMAC-SHA256) and timestamp."""
    ts = str(int(time.time()) if timestamp is None else int(timestamp))
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature,
    }


def _channel_name(channel_id: str) -> str:
    if channel_id.startswith("D"):
        return "directmessage"
    if channel_id.startswith("G"):
        return "privategroup"
    return "random"


def slash_command_payload(
    text: str,
    *,
    user_id: str = "U111",
    channel_id: str = "C111",
    response_url: str,
    command: str = "/docker",
    team_id: str = "T111",
    trigger_id: str | None = None,
    user_name: str | None = None,
    channel_name: str | None = None,
) -> dict[str, str]:
    """The slash-command fields as a dict of strings (the Socket Mode ``slash_commands`` payload)."""
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "team_domain": TEAM_DOMAIN,
        "channel_id": channel_id,
        "channel_name": channel_name or _channel_name(channel_id),
        "user_id": user_id,
        "user_name": user_name or f"user_{user_id.lower()}",
        "command": command,
        "text": text,
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id or new_trigger_id(),
    }


def slash_command_body(
    text: str,
    *,
    user_id: str = "U111",
    channel_id: str = "C111",
    response_url: str,
    command: str = "/docker",
    team_id: str = "T111",
    trigger_id: str | None = None,
    user_name: str | None = None,
    channel_name: str | None = None,
) -> str:
    """The form-encoded HTTP body Slack POSTs for a slash command (``command=%2Fdocker&text=a+b``)."""
    return urlencode(
        slash_command_payload(
            text,
            user_id=user_id,
            channel_id=channel_id,
            response_url=response_url,
            command=command,
            team_id=team_id,
            trigger_id=trigger_id or new_trigger_id(),
            user_name=user_name,
            channel_name=channel_name,
        )
    )


def _find_button(message: dict[str, Any] | None, action_id: str) -> tuple[str | None, dict[str, Any] | None]:
    for block in (message or {}).get("blocks") or []:
        if not isinstance(block, dict):
            continue
        elements = list(block.get("elements") or [])
        if isinstance(block.get("accessory"), dict):
            elements.append(block["accessory"])
        for el in elements:
            if isinstance(el, dict) and el.get("action_id") == action_id:
                return block.get("block_id"), el
    return None, None


def _buttons(blocks: list[dict[str, Any]], label: str) -> list[dict[str, Any]]:
    return [
        el
        for b in blocks
        if b["type"] == "actions"
        for el in b["elements"]
        if el.get("type") == "button" and el["text"]["text"] == label
    ]


def button_labelled(blocks: list[dict[str, Any]], label: str) -> dict[str, Any]:
    """The one button of a message (its blocks) whose text is `label`."""
    [button] = _buttons(blocks, label)
    return button


def find_button(blocks: list[dict[str, Any]], label: str) -> dict[str, Any] | None:
    """The first button of a message whose text is `label`, or None when it has none."""
    found = _buttons(blocks, label)
    return dict(found[0]) if found else None


def block_actions_payload(
    action_id: str,
    value: str,
    *,
    user_id: str = "U111",
    channel_id: str = "C111",
    response_url: str,
    message_ts: str = "1700000000.000100",
    is_ephemeral: bool = False,
    message: dict[str, Any] | None = None,
    block_id: str | None = None,
    trigger_id: str | None = None,
) -> dict[str, Any]:
    """A ``block_actions`` payload for a button click.

    When ``message`` (the message that carried the button, with ``blocks``) is given, the
    button's ``block_id``/``text``/``style`` are taken from it. ``message`` is left out of
    the payload for ephemeral messages unless given, as Slack may omit it there.
    """
    found_block_id, button = _find_button(message, action_id)
    action: dict[str, Any] = {
        "action_id": action_id,
        "block_id": block_id or found_block_id or "actions",
        "text": (button or {}).get("text") or {"type": "plain_text", "text": "Button", "emoji": True},
        "value": value,
        "type": "button",
        "action_ts": f"{int(time.time())}.000200",
    }
    if button and button.get("style"):
        action["style"] = button["style"]
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {
            "id": user_id,
            "username": f"user_{user_id.lower()}",
            "name": f"user_{user_id.lower()}",
            "team_id": "T111",
        },
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel_id,
            "is_ephemeral": is_ephemeral,
        },
        "trigger_id": trigger_id or new_trigger_id(),
        "team": {"id": "T111", "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": _channel_name(channel_id)},
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [action],
    }
    if message is not None:
        msg = dict(message)
        msg.setdefault("type", "message")
        msg.setdefault("ts", message_ts)
        payload["message"] = msg
    elif not is_ephemeral:
        payload["message"] = {
            "type": "message",
            "subtype": "bot_message",
            "text": "",
            "ts": message_ts,
            "bot_id": "B111",
            "user": "UBOT",
            "blocks": [],
        }
    return payload


def block_actions_body(payload: dict[str, Any]) -> str:
    """The form-encoded HTTP body for an interaction: ``payload=<url-encoded JSON>``."""
    return urlencode({"payload": json.dumps(payload, separators=(",", ":"))})


def post_signed(
    url: str,
    body: str,
    secret: str,
    timestamp: int | None = None,
    headers_override: dict[str, str | None] | None = None,
    timeout: float = 10.0,
) -> tuple[int, str]:
    """POST ``body`` signed with ``secret`` to ``url`` as Slack would; returns (status, text).

    Never uses a proxy (plain ``http.client``, which ignores HTTP(S)_PROXY). If the server
    answers early and closes while the body is still being sent (e.g. 413 for a huge body),
    that answer is returned rather than a BrokenPipe error. ``headers_override`` replaces
    headers; a ``None`` value removes that header.
    """
    headers: dict[str, str] = {"User-Agent": SLACK_USER_AGENT, "Accept": "application/json,*/*"}
    headers.update(signed_headers(body, secret, timestamp))
    for k, v in (headers_override or {}).items():
        for existing in [h for h in headers if h.lower() == k.lower()]:
            del headers[existing]
        if v is not None:
            headers[k] = v
    parts = urlsplit(url)
    conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        send_error: OSError | None = None
        try:
            conn.request("POST", target, body=body.encode("utf-8"), headers=headers)
        except (BrokenPipeError, ConnectionResetError) as e:
            send_error = e  # the server may already have answered: read it below
        try:
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException):
            if send_error is not None:
                raise send_error from None
            raise
        return int(resp.status), resp.read().decode("utf-8", errors="replace")
    finally:
        conn.close()


def app_home_opened_payload(user_id: str = "U111", event_id: str = "Ev1") -> dict[str, Any]:
    """The events_api payload Slack sends when someone opens the bot's Home tab."""
    event = {"type": "app_home_opened", "user": user_id, "channel": "D111", "tab": "home", "event_ts": "1.2"}
    return {
        "type": "event_callback",
        "team_id": "T111",
        "api_app_id": APP_ID,
        "event": event,
        "event_id": event_id,
    }
