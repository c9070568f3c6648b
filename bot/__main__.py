"""`python -m bot shell` (terminal) or `python -m bot serve` (Slack)."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from bot.botconfig import ConfigError
from bot.config import Settings, describe_error
from bot.logs import setup_logging
from bot.router import Router
from bot.services import Services, build_services

if TYPE_CHECKING:
    from bot.delivery import Poster


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        sys.exit(f"Configuration error:\n{describe_error(error)}")


def secrets_of(settings: Settings) -> tuple[str, ...]:
    values = (settings.slack_bot_token, settings.slack_app_token, settings.slack_signing_secret)
    return tuple(v.get_secret_value() for v in values if v)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bot", description="dockerbot")
    sub = parser.add_subparsers(dest="mode", required=True)
    sub.add_parser("shell", help="type /docker commands in the terminal")
    serve = sub.add_parser("serve", help="run in Slack (Socket Mode if SLACK_APP_TOKEN is set, else HTTP)")
    serve.add_argument("--port", type=int, default=None, help="HTTP port (default DOCKERBOT_PORT or 3000)")
    serve.add_argument("--host", default="0.0.0.0", help="HTTP listen address")
    args = parser.parse_args(argv)

    settings = load_settings()
    # In the shell, log lines would interleave with the conversation: only warnings go to stderr.
    level = settings.log_level if args.mode == "serve" or settings.log_level == "DEBUG" else "WARNING"
    setup_logging(level, settings.log_format, secrets_of(settings))
    try:
        services = build_services(settings)
    except ConfigError as error:
        sys.exit(f"Configuration error:\n{error}")
    router = Router(services)
    try:
        if args.mode == "shell":
            from bot.terminal import Shell, TerminalPoster

            print(
                f"dockerbot shell on {services.hosts.default.address} — type `help`, or `exit`.", flush=True
            )
            shell = Shell(router, files_dir=settings.data_dir / "files")
            start_background(services, TerminalPoster(shell))
            shell.loop()
        else:
            serve_slack(settings, router, args.host, args.port if args.port is not None else settings.port)
    finally:
        if services.scheduler is not None:
            services.scheduler.shutdown(wait=False)
        if services.ledger is not None:
            services.ledger.stop()
        services.close()


def start_background(services: Services, poster: Poster) -> None:
    """This process's standing work: the scheduler, and the last-use ledger following each engine."""
    from bot.delivery import Delivery
    from bot.ledger import Ledger
    from bot.scheduler import Scheduler

    services.ledger = Ledger(services.store.engine)
    services.ledger.start_watching(services.hosts)
    scheduler = Scheduler(services, Delivery(services.store.engine, poster))
    services.scheduler = scheduler
    scheduler.start()


def serve_slack(settings: Settings, router: Router, host: str, port: int) -> None:
    """Serve until SIGTERM/SIGINT, then shut down gracefully (see `shut_down`)."""
    from bot.server import Readiness, health_app, http_app, make_http_server, socket_mode_handler
    from bot.slack_app import SlackPoster, create_app

    if not settings.slack_bot_token:
        sys.exit("Configuration error:\nSLACK_BOT_TOKEN: required to serve Slack")
    if not settings.slack_app_token and not settings.slack_signing_secret:
        sys.exit("Configuration error:\nSLACK_SIGNING_SECRET: required in HTTP mode")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    work = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="work")
    app = create_app(settings, router, work=work)
    start_background(router.services, SlackPoster(app.client))
    engine_host = router.services.hosts.default
    if settings.slack_app_token:
        handler = socket_mode_handler(app, settings.slack_app_token.get_secret_value())
        handler.connect()
        server = make_http_server(
            health_app(Readiness(engine_host, handler.client.is_connected)),
            host,
            settings.health_port,
            settings.max_body_bytes,
        )
        print(f"dockerbot: Socket Mode; health on {host}:{server.effective_port}", flush=True)
    else:
        handler = None
        server = make_http_server(http_app(app, Readiness(engine_host)), host, port, settings.max_body_bytes)
        print(f"dockerbot: HTTP on {host}:{server.effective_port}/slack/events", flush=True)
    threading.Thread(target=server.run, name="http", daemon=True).start()
    stop.wait()
    shut_down(router, server, handler, work)


def shut_down(router: Router, server: Any, handler: Any, work: ThreadPoolExecutor) -> None:
    """Stop taking commands; end running pulls with a message that says so; let the rest finish."""
    from bot.pulling import PULLS

    print("dockerbot: shutting down", flush=True)
    if handler is not None:
        with contextlib.suppress(Exception):  # slack-sdk 3.47's close race (slack-platform.md §3.7)
            handler.close()
    server.close()
    PULLS.interrupt_all("the bot is shutting down; run the pull again when it is back")
    work.shutdown(wait=True, cancel_futures=True)  # replies to interrupted pulls go out here
    if router.services.scheduler is not None:
        router.services.scheduler.shutdown(wait=True)


if __name__ == "__main__":
    os.environ.pop("SLACK_CLIENT_ID", None)  # Bolt would switch to OAuth mode
    main()
