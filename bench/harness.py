"""The bench's own world: a clean environment, a sandbox engine, the docker CLI on it, a warm bot.

The warm bot is the one `python -m bot shell` runs (Router + Services + the terminal Shell), built in
this process as tests/conftest.py builds it, so a command's time is the bot's own work, not start-up.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import docker

from bot.core.router import Router
from bot.core.services import Services, build_services
from bot.core.settings import Settings
from bot.runtime.startup import freeze_start_up_objects
from bot.sandbox import Sandbox
from bot.terminal.shell import Shell
from handlers import COMMANDS


def clean_environment() -> None:
    """Nothing from the caller's shell may steer the bot or its Slack clients (proxies, tokens, hosts)."""
    for key in list(os.environ):
        if key.upper() in {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"} or key.startswith(
            ("SLACK_", "DOCKER_", "DOCKERBOT_")
        ):
            del os.environ[key]
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"


class Cli:
    """The docker CLI aimed at the sandbox engine only, its output thrown away as `> /dev/null` would."""

    def __init__(self, box: Sandbox) -> None:
        self.env = box.engine.cli_env()
        self.binary = shutil.which("docker") or "/usr/bin/docker"

    def run(self, *args: str, timeout: float = 600) -> float:
        """Seconds the command took; raises if it failed."""
        started = time.perf_counter()
        done = subprocess.run(
            [self.binary, *args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout,
        )
        seconds = time.perf_counter() - started
        if done.returncode:
            raise RuntimeError(f"docker {' '.join(args)}: {done.stderr.decode(errors='replace').strip()}")
        return seconds

    def quiet(self, *args: str) -> None:
        """Run for its effect, ignoring failure (e.g. removing what may not be there)."""
        subprocess.run(
            [self.binary, *args], env=self.env, stdin=subprocess.DEVNULL, capture_output=True, timeout=600
        )


class WarmBot:
    """The terminal adapter over a live Router; `say` returns what it printed."""

    def __init__(self, data_dir: Path, **overrides: Any) -> None:
        defaults: dict[str, Any] = {"docker_timeout": 600, "pull_inactivity_timeout": 120}
        settings = Settings(data_dir=data_dir, **{**defaults, **overrides})
        self.services: Services = build_services(settings, COMMANDS)
        self.router = Router(self.services)
        self.out = io.StringIO()
        # As `python -m bot shell` does: attached files (a long table) are saved under the data dir,
        # and what start-up built is frozen out of the garbage collector's sight.
        self.shell = Shell(self.router, out=self.out, files_dir=data_dir / "files")
        freeze_start_up_objects()

    def say(self, line: str) -> str:
        self.out.seek(0)
        self.out.truncate()
        self.shell.run_line(line)
        return self.out.getvalue()

    def close(self) -> None:
        self.services.close()


class World:
    """Sandbox engine + registry, the CLI on it, an API client, a scratch dir; `close` undoes it all."""

    def __init__(self) -> None:
        clean_environment()
        self.box = Sandbox().start()
        os.environ["DOCKER_HOST"] = self.box.docker_host  # the bot's `local` host, here and in subprocesses
        self.cli = Cli(self.box)
        self.client = docker.DockerClient(base_url=self.box.docker_host, timeout=600)
        self.api = self.client.api
        self.tmp = Path(tempfile.mkdtemp(prefix="dbot-bench-"))
        self._bots: list[WarmBot] = []
        self.prepared: dict[str, float] = {}  # one-off set-ups done (name -> seconds they took)

    def warm_bot(self, **settings: Any) -> WarmBot:
        bot = WarmBot(Path(tempfile.mkdtemp(prefix="bot-", dir=self.tmp)), **settings)
        self._bots.append(bot)
        return bot

    def remove_all_images(self) -> None:
        """`docker image prune -a -f` (the bench runs no containers, so that is every image)."""
        self.api.prune_images(filters={"dangling": False})

    def close(self) -> None:
        for bot in self._bots:
            bot.close()
        self.client.close()
        self.box.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
