"""Serving the Slack app over HTTP (uvicorn, signed requests at /slack/events), and health and
metrics on a listen address of their own (never on the public port Slack reaches).

The HTTP side is an ASGI app on uvicorn's event loop (httptools, uvloop): a request is parsed,
verified and acknowledged in that one thread, with no hand-off between threads on the way, which
is what kept the ack slow under load with a thread-per-request server (see bench/acks.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn
from slack_bolt import App, BoltRequest
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from bot.engine.hosts import DockerHost
from bot.metrics import exposition
from bot.slack.app import dispatch_noting_auth

log = logging.getLogger("dockerbot.server")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Readiness:
    """/readyz: the default engine answers, and so does every other check given by name (the Slack
    connection, the worker process); cached for a second."""

    def __init__(
        self, host: DockerHost, clock: Callable[[], float] = time.monotonic, **checks: Callable[[], bool]
    ) -> None:
        self.host = host
        self.clock = clock
        self.checks = {"slack": lambda: True, **checks}
        self._checked_at = 0.0
        self._last: dict[str, bool] = {}
        self._lock = threading.Lock()

    def __call__(self) -> dict[str, bool]:
        with self._lock:
            if self.clock() - self._checked_at > 1.0:
                self._last = {"engine": self.host.ping()}
                self._last.update({name: bool(check()) for name, check in self.checks.items()})
                self._checked_at = self.clock()
            return dict(self._last)


async def _respond(
    send: Send, status: int, body: bytes, content_type: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    head = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": head + (headers or [])})
    await send({"type": "http.response.body", "body": body})


def _json(status: int, body: dict[str, Any]) -> tuple[int, bytes, str]:
    return status, json.dumps(body).encode(), "application/json"


def health_response(path: str, ready: Callable[[], dict[str, bool]]) -> tuple[int, bytes, str]:
    """/healthz (the process answers), /readyz (503 unless every check passes), /metrics."""
    if path == "/healthz":
        return _json(200, {"status": "ok"})
    if path == "/readyz":
        checks = ready()
        ok = all(checks.values())
        return _json(200 if ok else 503, {"ready": ok, **checks})
    if path == "/metrics":
        data, content_type = exposition()
        return 200, data, content_type
    return _json(404, {"error": "not found"})


def health_app(ready: Callable[[], dict[str, bool]]) -> AsgiApp:
    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        # /readyz pings the engine: never on the event loop, which acknowledges Slack's requests.
        await _respond(send, *await asyncio.to_thread(health_response, scope["path"], ready))

    return asgi


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    pass


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The request body; BodyTooLarge past `limit` bytes, refused on the declared size at once;
    ClientGone if the client hung up before sending it all."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise BodyTooLarge
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        body += message.get("body", b"")
        if len(body) > limit:
            raise BodyTooLarge
        if not message.get("more_body"):
            return bytes(body)


def _bolt_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    # A repeated header is joined as HTTP joins it, so a second X-Slack-Signature fails verification.
    headers: dict[str, str] = {}
    for name, value in raw:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


def _one_signature(raw: list[tuple[bytes, bytes]]) -> bool:
    """At most one X-Slack-Signature and X-Slack-Request-Timestamp, and the timestamp an integer."""
    stamps = [value for name, value in raw if name.lower() == b"x-slack-request-timestamp"]
    signatures = [value for name, value in raw if name.lower() == b"x-slack-signature"]
    if len(stamps) > 1 or len(signatures) > 1:
        return False
    return not stamps or stamps[0].strip().isdigit()


def http_app(app: App, max_body_bytes: int) -> AsgiApp:
    """Slack's requests at POST /slack/events (larger bodies get 413 unread), and nothing else: this
    is the public port. Health and metrics are served by `health_app` on a listen address of their own."""
    authorized = threading.Event()  # until set, requests are dispatched in a thread (see below)

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] != "/slack/events":
            await _respond(send, *_json(404, {"error": "not found"}))
            return
        if scope["method"] != "POST":
            await _respond(send, 405, b"Method Not Allowed", "text/plain", [(b"allow", b"POST")])
            return
        try:
            body = await _read_body(scope, receive, max_body_bytes)
        except BodyTooLarge:
            await _respond(send, 413, b"Request Entity Too Large", "text/plain", [(b"connection", b"close")])
            return
        except ClientGone:  # nothing to answer, and a truncated body is not a request
            return
        if not _one_signature(scope["headers"]):
            # Bolt would fail on int("1, 2") with a 500: a malformed signature is a 401, nothing runs.
            await _respond(send, 401, b"", "text/plain")
            return
        request = BoltRequest(
            # Undecodable bytes stay undecodable: the signature check then refuses the request.
            body=body.decode("utf-8", errors="replace"),
            query=scope["query_string"].decode("latin-1"),
            headers=_bolt_headers(scope["headers"]),
        )
        if authorized.is_set():
            response = dispatch_noting_auth(app, request, authorized)
        else:
            response = await asyncio.to_thread(dispatch_noting_auth, app, request, authorized)
        headers = {name.lower(): values for name, values in response.headers.items()}
        content_type = (headers.pop("content-type", None) or ["text/plain;charset=utf-8"])[0]
        headers.pop("content-length", None)
        extra = [(name.encode(), value.encode()) for name, values in headers.items() for value in values]
        await _respond(send, response.status, (response.body or "").encode(), content_type, extra)

    return asgi


class BoundedHeadProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with bounds on a request's line and headers that uvicorn does
    not have: past `max_head_bytes`, the client gets 431 and the connection is closed, instead of the
    parser buffering whatever it is sent; and a connection whose head is not complete within
    `header_timeout` seconds of connecting (or of its next request's first byte) is closed, so
    half-open connections cannot pile up."""

    max_head_bytes = 256 * 1024  # as waitress, which served us before
    header_timeout = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _start_head_timer(self) -> None:
        self._stop_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes = True, 0
        if self._head_timer is None:  # the next request on a kept-alive connection
            self._start_head_timer()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._stop_head_timer()
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_head and not self.transport.is_closing():  # all of it went into an unfinished head
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self.transport.write(
                    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                    b"content-length: 0\r\nconnection: close\r\n\r\n"
                )
                self.transport.close()


class HttpServer:
    """uvicorn serving an ASGI app from a thread of its own; port 0 picks a free port (see `.port`);
    `close` stops it from any other thread."""

    def __init__(self, asgi: AsgiApp, host: str, port: int, *, header_timeout: float = 10.0) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.create_server((host, port), family=family, backlog=2048)
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(
            asgi,
            loop="uvloop",
            http=type("HeadTimedProtocol", (BoundedHeadProtocol,), {"header_timeout": header_timeout}),
            lifespan="off",
            log_config=None,  # our handlers (bot.logs), not uvicorn's
            log_level="warning",
            access_log=False,
            server_header=False,
            headers=[("server", "dockerbot")],
            timeout_graceful_shutdown=5,
            proxy_headers=False,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="http", daemon=True)

    def start(self) -> HttpServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._socket.close()

    def _run(self) -> None:
        # uvicorn installs no signal handlers outside the main thread: SIGTERM stays ours.
        self._server.run(sockets=[self._socket])
