"""`python -m bot serve`: Slack's requests are received and acknowledged in this process, and the
commands run in a worker process (see bot.runtime.worker for why), until SIGTERM/SIGINT."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Any

from bot.core import config_file
from bot.core.settings import Settings
from bot.engine.hosts import HostPool


def serve_slack(settings: Settings, host: str, port: int) -> None:
    from bot.runtime.worker import WorkerFailed, WorkerProcess
    from bot.slack.app import create_app
    from bot.slack.client import make_web_client
    from bot.slack.http import HttpServer, Readiness, health_app, http_app
    from bot.slack.socket_mode import socket_mode_handler

    if not settings.slack_bot_token:
        sys.exit("Configuration error:\nSLACK_BOT_TOKEN: required to serve Slack")
    if not settings.slack_app_token and not settings.slack_signing_secret:
        sys.exit("Configuration error:\nSLACK_SIGNING_SECRET: required in HTTP mode")
    try:  # checked here too, so a bad file is reported before anything starts
        engine_host = HostPool(config_file.hosts(config_file.load(settings.config), settings)).default
    except config_file.ConfigError as error:
        sys.exit(f"Configuration error:\n{error}")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    worker = WorkerProcess(make_web_client(settings))
    try:
        worker.start()
    except WorkerFailed as error:
        sys.exit(str(error))
    app = create_app(settings, worker, deliveries=shared_deliveries(settings))
    if settings.slack_app_token:
        handler = socket_mode_handler(app, settings.slack_app_token.get_secret_value())
        handler.connect()
        ready = Readiness(engine_host, slack=handler.client.is_connected, worker=worker.alive)
        servers: list[HttpServer] = []
    else:
        handler = None
        ready = Readiness(engine_host, worker=worker.alive)
        # The public port: Slack's requests only. /readyz (which pings the engine) and /metrics are not
        # for whoever can reach it.
        servers = [
            HttpServer(
                http_app(app, settings.max_body_bytes),
                host,
                port,
                header_timeout=settings.http_header_timeout,
            )
        ]
    health_host = settings.health_host or host
    health = HttpServer(
        health_app(ready), health_host, settings.health_port, header_timeout=settings.http_header_timeout
    )
    servers.append(health)
    if handler is not None:
        print(f"dockerbot: Socket Mode; health on {health_host}:{health.port}", flush=True)
    else:
        public = f"{host}:{servers[0].port}/slack/events"
        print(f"dockerbot: HTTP on {public}; health on {health_host}:{health.port}", flush=True)
    for server in servers:
        server.start()
    stop.wait()
    shut_down(servers, handler, worker)


def shared_deliveries(settings: Settings) -> Any:
    """On PostgreSQL, where several replicas may serve one app, the deliveries taken are recorded
    there; on SQLite (one replica) the process's own memory is enough, and keeps acks off the disk."""
    url = settings.database_url or ""
    if not url.startswith("postgresql"):
        return None  # before the imports: the front on SQLite loads no SQLAlchemy
    from bot.slack.app import REPLAY_WINDOW
    from bot.state.deliveries import Deliveries
    from bot.state.store import make_engine

    return Deliveries(make_engine(url), keep=REPLAY_WINDOW)


def shut_down(servers: list[Any], handler: Any, worker: Any) -> None:
    """Stop taking requests; the worker ends running pulls with a message that says so and lets
    the rest of its work finish."""
    print("dockerbot: shutting down", flush=True)
    if handler is not None:
        with contextlib.suppress(Exception):  # slack-sdk 3.47's close race (builtin/connection.py disconnect)
            handler.close()
    for server in servers:
        server.close()
    worker.stop()
