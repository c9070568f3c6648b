"""Serving the Slack app: HTTP (waitress, signed requests at /slack/events) or Socket Mode."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.wsgi import SlackRequestHandler
from waitress.server import create_server

from bot.hosts import DockerHost
from bot.metrics import exposition

log = logging.getLogger("dockerbot.server")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _json(start_response: Callable[..., Any], status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


class Readiness:
    """/readyz: the default engine answers, and so does every other check given by name (the Slack
    connection, the worker process); cached for a second."""

    def __init__(self, host: DockerHost, **checks: Callable[[], bool]) -> None:
        self.host = host
        self.checks = {"slack": lambda: True, **checks}
        self._checked_at = 0.0
        self._last: dict[str, bool] = {}
        self._lock = threading.Lock()

    def __call__(self) -> dict[str, bool]:
        with self._lock:
            if time.monotonic() - self._checked_at > 1.0:
                self._last = {"engine": self.host.ping()}
                self._last.update({name: bool(check()) for name, check in self.checks.items()})
                self._checked_at = time.monotonic()
            return dict(self._last)


def health_app(ready: Callable[[], dict[str, bool]]) -> WsgiApp:
    """/healthz (the process answers), /readyz (503 unless every check passes), /metrics."""

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO")
        if path == "/healthz":
            return _json(start_response, "200 OK", {"status": "ok"})
        if path == "/readyz":
            checks = ready()
            ok = all(checks.values())
            return _json(
                start_response, "200 OK" if ok else "503 Service Unavailable", {"ready": ok, **checks}
            )
        if path == "/metrics":
            data, content_type = exposition()
            start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(data)))])
            return [data]
        return _json(start_response, "404 Not Found", {"error": "not found"})

    return wsgi


def http_app(app: App, ready: Callable[[], dict[str, bool]]) -> WsgiApp:
    slack = SlackRequestHandler(app, path="/slack/events")
    health = health_app(ready)

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/slack/events":
            return slack(environ, start_response)
        return health(environ, start_response)

    return wsgi


class HttpServer:
    """A threaded production WSGI server (waitress) run in a thread of its own; port 0 picks a free
    port (see `.port`); `close` stops it from any other thread."""

    def __init__(self, wsgi: WsgiApp, host: str, port: int, max_body_bytes: int) -> None:
        self.server = create_server(
            wsgi,
            host=host,
            port=port,
            threads=16,
            max_request_body_size=max_body_bytes,  # larger bodies get 413 before Bolt sees them
            ident="dockerbot",
        )
        self.port: int = self.server.effective_port
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="http", daemon=True)

    def start(self) -> HttpServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()
        self.server.close()
        self._thread.join(5)

    def _run(self) -> None:
        try:
            self.server.run()
        except (OSError, ValueError):
            # Closing the listening socket under waitress's select() ends it with EBADF: expected
            # when we close it, an error otherwise.
            if not self._closing.is_set():
                log.exception("the HTTP server stopped")
                raise


def socket_mode_handler(app: App, app_token: str, ping_interval: float = 5) -> SocketModeHandler:
    # A dropped connection is noticed (and replaced) within one ping interval: Bolt's default is 10 s.
    return SocketModeHandler(
        app, app_token=app_token, web_client=app.client, concurrency=16, ping_interval=ping_interval
    )
