"""`python -m bot shell` (terminal) or `python -m bot serve` (Slack)."""

from __future__ import annotations

import argparse
import os
import sys

from bot.core.config_file import ConfigError
from bot.core.settings import Settings
from bot.logs import setup_logging
from bot.runtime.startup import (
    freeze_start_up_objects,
    load_settings,
    secrets_of,
    share_metrics,
    start_background,
)


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
    if args.mode == "serve":
        share_metrics(settings.data_dir / "metrics")  # the worker process counts most of them
        from bot.runtime.serve import serve_slack

        serve_slack(settings, args.host, args.port if args.port is not None else settings.port)
    else:
        shell(settings)


def shell(settings: Settings) -> None:
    from bot.core.router import Router
    from bot.core.services import build_services
    from bot.terminal.shell import Shell, TerminalPoster
    from handlers import COMMANDS

    try:
        services = build_services(settings, COMMANDS)
    except ConfigError as error:
        sys.exit(f"Configuration error:\n{error}")
    try:
        print(f"dockerbot shell on {services.hosts.default.address} — type `help`, or `exit`.", flush=True)
        shell = Shell(Router(services), files_dir=services.settings.data_dir / "files")
        start_background(services, TerminalPoster(shell))
        freeze_start_up_objects()
        shell.loop()
    finally:
        services.stop_background(wait=False)
        services.close()


if __name__ == "__main__":
    os.environ.pop("SLACK_CLIENT_ID", None)  # Bolt would switch to OAuth mode
    main()
