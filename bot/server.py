"""Serving the Slack app: HTTP (waitress, signed requests at /slack/events) or Socket Mode."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.wsgi import SlackRequestHandler
from waitress.server import create_server

log = logging.getLogger("dockerbot.server")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _json(start_response: Callable[..., Any], status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def health_app(ready: Callable[[], bool] = lambda: True) -> WsgiApp:
    """/healthz: the process answers. Everything else: 404."""

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            return _json(start_response, "200 OK", {"status": "ok"})
        return _json(start_response, "404 Not Found", {"error": "not found"})

    return wsgi


def http_app(app: App) -> WsgiApp:
    slack = SlackRequestHandler(app, path="/slack/events")
    health = health_app()

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/slack/events":
            return slack(environ, start_response)
        return health(environ, start_response)

    return wsgi


def make_http_server(wsgi: WsgiApp, host: str, port: int, max_body_bytes: int) -> Any:
    """A threaded production WSGI server; port 0 picks a free port (see `.effective_port`)."""
    return create_server(
        wsgi,
        host=host,
        port=port,
        threads=16,
        max_request_body_size=max_body_bytes,  # larger bodies get 413 before Bolt sees them
        ident="dockerbot",
    )


def socket_mode_handler(app: App, app_token: str) -> SocketModeHandler:
    return SocketModeHandler(app, app_token=app_token, web_client=app.client, concurrency=16)
