"""Serving the Slack app over Socket Mode: slack-sdk's builtin client, acking in the reader thread.

The builtin client passes every envelope through a queue, a dispatcher thread and a pool thread
before Bolt sees it: three hand-offs per ack, each a wait for the GIL and, under load, for a CPU.
Here an envelope is dispatched in the thread that read it, as soon as that cannot block (see
`dispatch_noting_auth`); everything else (hello, disconnect, the first envelopes) takes the
client's usual path.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from slack_bolt import App, BoltRequest
from slack_bolt.adapter.socket_mode.base_handler import BaseSocketModeHandler
from slack_bolt.adapter.socket_mode.internals import build_headers, send_response
from slack_sdk.socket_mode.builtin import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest

from bot.slack.app import dispatch_noting_auth


class InlineSocketModeClient(SocketModeClient):
    def __init__(self, *args: Any, inline: threading.Event, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inline = inline

    def enqueue_message(self, message: str) -> None:
        if self.inline.is_set() and message.startswith("{"):
            try:
                envelope = json.loads(message)
            except ValueError:
                envelope = {}  # the usual path reports it
            if envelope.get("envelope_id") and envelope.get("type") != "disconnect":
                self.run_message_listeners(envelope, message)
                return
        super().enqueue_message(message)


class SocketModeFront(BaseSocketModeHandler):
    """Bolt's SocketModeHandler, on `InlineSocketModeClient`; `connect()`, then `close()`."""

    def __init__(self, app: App, app_token: str, ping_interval: float = 5) -> None:
        self.app = app
        self.authorized = threading.Event()
        self.client = InlineSocketModeClient(
            app_token=app_token,
            logger=app.logger,
            web_client=app.client,
            proxy=app.client.proxy,
            # A dropped connection is noticed (and replaced) within one ping interval: Bolt's is 10 s.
            ping_interval=ping_interval,
            receive_buffer_size=65536,  # Bolt's 1,024 bytes take several reads for one envelope
            concurrency=16,
            inline=self.authorized,
        )
        self.client.socket_mode_request_listeners.append(self.handle)

    def handle(self, client: SocketModeClient, req: SocketModeRequest) -> None:
        started = time.time()
        request = BoltRequest(mode="socket_mode", body=req.payload, headers=build_headers(req))
        send_response(client, req, dispatch_noting_auth(self.app, request, self.authorized), started)


def socket_mode_handler(app: App, app_token: str, ping_interval: float = 5) -> SocketModeFront:
    return SocketModeFront(app, app_token, ping_interval)
