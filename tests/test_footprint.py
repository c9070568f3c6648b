"""Each of the served bot's processes loads only what it needs (issue 17's footprint): with no ssh://
host, neither loads paramiko's stack (cryptography, PyNaCl, bcrypt); the HTTP server (uvicorn on
httptools and uvloop) is only in the front, the job store's SQLAlchemy only in the worker, and
matplotlib only where a chart is drawn.

What a process loaded is read from the outside, as /proc/PID/maps lists the extension modules
(.so files) mapped into it: paramiko itself is pure Python, but it cannot run without them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from bot.sandbox import Engine
from tests.botprocess import start_bot, worker_pid
from tests.conftest import SIGNING_SECRET
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_requests import post_signed, slash_command_body
from tests.test_operations import _get

SSH_STACK = {"cryptography", "nacl", "bcrypt", "_cffi_backend"}
HTTP_SERVER = {"httptools", "uvloop"}
CHARTS = {"matplotlib", "numpy", "kiwisolver"}  # `report` draws its chart on demand


def extension_packages(pid: int) -> set[str]:
    """The installed packages (or top-level modules) whose compiled extensions the process mapped."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    found = re.findall(r"/site-packages/([^/\s]+)\S*\.so\b", maps)
    return {name.split(".")[0] for name in found}


def test_the_served_processes_load_what_they_need(
    engine: Engine, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    bot = start_bot(engine, fake_slack, tmp_path)
    try:
        body = slash_command_body("images", response_url=fake_slack.response_url("images"))
        assert post_signed(bot.url, body, SIGNING_SECRET)[0] == 200
        [reply] = fake_slack.wait_for("response_url", lambda c: c.tag == "images", timeout=30)
        listed = str(reply.body)  # the worker asked the engine
        assert "REPOSITORY" in listed or "There are no images on `local`." in listed
        assert json.loads(_get(bot.health + "/readyz")[1])["engine"] is True  # so did the front
        worker = worker_pid(bot)
        assert worker is not None
        front, back = extension_packages(bot.proc.pid), extension_packages(worker)
        assert front >= HTTP_SERVER and "pydantic_core" in back  # what they run on is seen
        assert not front & SSH_STACK and not back & SSH_STACK
        assert not front & CHARTS and not back & CHARTS
        assert not back & HTTP_SERVER
        assert "sqlalchemy" in back and "sqlalchemy" not in front
    finally:
        bot.proc.kill()
        bot.proc.wait(10)
