"""The bot as deployed (`python -m bot serve`, two processes), for crash, shutdown and Socket Mode tests."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bot.sandbox import Engine
from tests.conftest import APP_TOKEN, BOT_TOKEN, SIGNING_SECRET
from tests.fakes.slack import FakeSlack

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class BotProcess:
    proc: subprocess.Popen[str]
    url: str  # where Slack posts: http://127.0.0.1:PORT/slack/events (Socket Mode: the health server)
    log: Path  # the bot's stderr
    health: str = ""  # http://127.0.0.1:PORT: /healthz, /readyz, /metrics (both modes)

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


def start_bot(
    engine: Engine,
    fake_slack: FakeSlack,
    data_dir: Path,
    *,
    socket_mode: bool = False,
    elsewhere: bool = False,
    **env_extra: str,
) -> BotProcess:
    """`python -m bot serve` in HTTP mode, or in Socket Mode (then `url` is its health server's).

    `elsewhere`: started from another directory by a launcher that puts the bot on sys.path itself
    (as an installed entry point would), not by `-m` from the project's directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DOCKERBOT_"))}
    env.update(
        DOCKER_HOST=engine.docker_host,
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=fake_slack.api_url,
        DOCKERBOT_DATA_DIR=str(data_dir),
        DOCKERBOT_DEFAULT_ROLE="viewer",  # deny by default: the tests' workspace chose viewer for all
        DOCKERBOT_HEALTH_PORT="0",
        **env_extra,
    )
    if socket_mode:
        env.update(SLACK_APP_TOKEN=APP_TOKEN)
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / "bot-stderr.log"
    with log.open("a") as stderr:  # a file, not a pipe: a full pipe would block the bot's logging
        args = ["serve", "--host", "127.0.0.1", "--port", "0"]
        launcher = (
            [
                "-c",
                f"import sys, runpy; sys.path.insert(0, {str(ROOT)!r}); sys.argv[1:] = {args!r}; "
                "runpy.run_module('bot', run_name='__main__', alter_sys=True)",
            ]
            if elsewhere
            else ["-m", "bot", *args]
        )
        if elsewhere:
            env.pop("PYTHONPATH", None)
        proc = subprocess.Popen(
            [sys.executable, *launcher],
            cwd=data_dir if elsewhere else ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    line = ""
    while "health on " not in line:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line, "the bot did not start:\n" + log.read_text(errors="replace")[-3000:]
    health = "http://" + line.split("health on ")[1].strip()
    if socket_mode:
        return BotProcess(proc, health, log, health)
    return BotProcess(proc, "http://" + line.split("HTTP on ")[1].split(";")[0].strip(), log, health)


def worker_pid(bot: BotProcess) -> int | None:
    """The pid of the bot's worker process (bot.runtime.worker), or None while there is none."""
    for child in Path(f"/proc/{bot.proc.pid}/task").glob("*/children"):
        try:
            children = child.read_text().split()
        except FileNotFoundError:  # that thread ended since the listing
            continue
        for pid in children:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except FileNotFoundError:
                continue
            if b"bot.runtime.worker" in cmdline:
                return int(pid)
    return None


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
