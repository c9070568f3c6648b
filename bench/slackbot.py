"""The bot as deployed: `python -m bot serve` in a subprocess, talking to a FakeSlack in this process.

Commands reach it as Slack sends them: signed HTTP POSTs, or envelopes on the Socket Mode websocket.
Every command gets its own response_url tag, so "did each command get its reply" is a set difference.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import uvloop

from bench.socket_sender import SocketSender, envelope
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_requests import (
    block_actions_body,
    block_actions_payload,
    post_signed,
    signed_headers,
    slash_command_body,
    slash_command_payload,
)

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-signing-secret-7c1d"
BOT_TOKEN = "xoxb-bench-0000-secret"
APP_TOKEN = "xapp-1-A111-111-bench-secret"
USER = "UBENCH"  # an admin: may pull and clean up
CHANNEL = "CBENCH"
_READY = re.compile(r"dockerbot: (?:HTTP on [\d.]+:(\d+)/slack/events; |Socket Mode; )health on [\d.]+:(\d+)")

Mode = Literal["http", "socket"]


class BotProcess:
    """One `python -m bot serve` on the sandbox engine; `stop` ends it (SIGTERM, then SIGKILL)."""

    def __init__(
        self, slack: FakeSlack, mode: Mode, data_dir: Path, extra_env: dict[str, str] | None = None
    ) -> None:
        self.slack = slack
        self.mode = mode
        self.data_dir = data_dir
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.health_port = 0
        # HTTP clients run in a process of their own (see `burst`), started with the bot so that a
        # burst starts at once, not a second later, after a spawn, when background load is under way.
        self.clients: ProcessPoolExecutor | None = None
        # Socket Mode envelopes come from a process of their own too (see bench.socket_sender).
        self.sender: SocketSender | None = None

    def start(self, timeout: float = 60) -> BotProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,  # already cleaned by harness.clean_environment; DOCKER_HOST is the sandbox
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": self.slack.api_url,
            "DOCKERBOT_DATA_DIR": str(self.data_dir),
            "DOCKERBOT_ADMINS": USER,
            "DOCKERBOT_HEALTH_PORT": "0",
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }
        if self.mode == "socket":
            env["SLACK_APP_TOKEN"] = APP_TOKEN
            sender = self.sender = SocketSender()
            self.slack.set_response("apps.connections.open", lambda _call: {"ok": True, "url": sender.url})
        out = (self.data_dir / "stdout.log").open("wb")
        err = (self.data_dir / "stderr.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1", "--port", "0"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
        out.close()
        err.close()
        deadline = time.monotonic() + timeout
        while not self.port:
            found = _READY.search((self.data_dir / "stdout.log").read_text(errors="replace"))
            if found:
                self.port = int(found.group(1) or found.group(2))
                self.health_port = int(found.group(2))
            elif self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the bot did not start:\n{self.log_tail()}")
            else:
                time.sleep(0.05)
        if self.sender is not None:
            self.sender.wait_connected(timeout)
        else:
            self.clients = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
            self.clients.submit(time.time).result()  # spawned and importable before any timing
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    def log_tail(self, lines: int = 30) -> str:
        text = (self.data_dir / "stderr.log").read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def rss_mb(self) -> float:
        """VmRSS of the bot's processes: the front, its worker and any process they started."""
        assert self.proc is not None
        total_kb, todo = 0, [str(self.proc.pid)]
        while todo:
            pid = todo.pop()
            with contextlib.suppress(FileNotFoundError):
                status = Path(f"/proc/{pid}/status").read_text()
                found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
                total_kb += int(found.group(1)) if found else 0
                for children in Path(f"/proc/{pid}/task").glob("*/children"):
                    todo += children.read_text().split()
        return total_kb / 1024

    def memory_by_process(self) -> dict[str, tuple[float, float]]:
        """(VmRSS, PSS) in MB of each of the bot's processes: `front` (`python -m bot serve`), `worker`
        (bot.runtime.worker) and any other (before issue 17: multiprocessing's resource tracker). PSS
        splits each page shared between processes (libraries, the interpreter) among them; VmRSS
        counts it in each."""
        assert self.proc is not None
        found: dict[str, tuple[float, float]] = {}
        todo = [str(self.proc.pid)]
        while todo:
            pid = todo.pop()
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                rss = _kb(Path(f"/proc/{pid}/status").read_text(), "VmRSS")
                pss = _kb(Path(f"/proc/{pid}/smaps_rollup").read_text(), "Pss")
                found[_role(cmdline, int(pid) == self.proc.pid)] = (rss / 1024, pss / 1024)
                for children in Path(f"/proc/{pid}/task").glob("*/children"):
                    todo += children.read_text().split()
        return found

    def metrics(self) -> str:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{self.health_port}/metrics", timeout=10) as resp:
            return str(resp.read().decode())

    def stop(self) -> None:
        if self.clients is not None:
            self.clients.shutdown()
            self.clients = None
        if self.proc is None:
            return
        if self.proc.poll() is None:
            if self.sender is not None:  # else slack-sdk's close() waits out its 3 s socket read timeout
                self.sender.close_connections()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None
        if self.sender is not None:
            self.sender.stop()
            self.sender = None
            self.slack.set_response("apps.connections.open", None)

    # --- talking to it, as Slack does ----------------------------------------------------------------
    def command(self, text: str, tag: str) -> float:
        """Send `/docker text` with its own response_url tag; seconds until it was acknowledged."""
        response_url = self.slack.response_url(tag)
        if self.mode == "http":
            body = slash_command_body(text, user_id=USER, channel_id=CHANNEL, response_url=response_url)
            started = time.perf_counter()
            status, answer = post_signed(self.url, body, SECRET, timeout=30)
            seconds = time.perf_counter() - started
            if status != 200:
                raise RuntimeError(f"/docker {text}: HTTP {status} {answer[:200]}")
            return seconds
        assert self.sender is not None
        payload = slash_command_payload(text, user_id=USER, channel_id=CHANNEL, response_url=response_url)
        return self.sender.send([envelope("slash_commands", payload)], 1)[0]

    def press(self, button: dict[str, Any], message: dict[str, Any], tag: str) -> None:
        """Click a button of a message the bot sent through a response_url."""
        payload = block_actions_payload(
            button["action_id"],
            button.get("value", ""),
            user_id=USER,
            channel_id=CHANNEL,
            response_url=self.slack.response_url(tag),
            message=message,
        )
        if self.mode == "http":
            status, answer = post_signed(self.url, block_actions_body(payload), SECRET, timeout=30)
            if status != 200:
                raise RuntimeError(f"button {button['action_id']}: HTTP {status} {answer[:200]}")
        else:
            assert self.sender is not None
            self.sender.send([envelope("interactive", payload)], 1)


def _role(cmdline: bytes, front: bool) -> str:
    if front:
        return "front"
    for marker, role in ((b"resource_tracker", "resource tracker"), (b"multiprocessing.spawn", "worker")):
        if marker in cmdline:
            return role
    return "worker" if b"bot.runtime.worker" in cmdline else cmdline.replace(b"\0", b" ").decode()[:40]


def _kb(text: str, field: str) -> int:
    found = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(found.group(1)) if found else 0


def burst(
    bot: BotProcess, texts: Iterable[str], prefix: str, clients: int
) -> tuple[list[float], list[str], float, float]:
    """Send every command from `clients` concurrent senders: (ack seconds, tags, start, end wall time).

    The senders run in a process of their own (HTTP clients, or the Socket Mode sender), so the
    fake Slack's threads in this one, answering the bot's replies meanwhile, do not hold up the
    clocks."""
    tags = [f"{prefix}-{i}" for i, _ in enumerate(texts)]
    texts = list(texts)
    jobs = [(text, bot.slack.response_url(tag)) for tag, text in zip(tags, texts, strict=True)]
    if bot.clients is not None:
        latencies, start, end = bot.clients.submit(http_clients, bot.url, jobs, clients).result()
        return latencies, tags, start, end
    assert bot.sender is not None
    envelopes = [
        envelope(
            "slash_commands",
            slash_command_payload(text, user_id=USER, channel_id=CHANNEL, response_url=response_url),
        )
        for text, response_url in jobs
    ]
    start = time.time()
    latencies = bot.sender.send(envelopes, clients)
    return latencies, tags, start, time.time()


def http_clients(url: str, jobs: list[tuple[str, str]], clients: int) -> tuple[list[float], float, float]:
    """(In a child process.) POST each signed command, `clients` at a time; ack seconds of each.

    The clients are asyncio protocols on one uvloop loop, and every request is built and signed
    before the clock starts: 50 client *threads* would queue for this process's GIL between a
    response arriving and its time being taken, and add that wait to the bot's figure. Against a
    server that answers at once, this client's own floor is p50 4 / p99 7 ms (asyncio streams on
    the default loop: 15 / 25 ms)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = []
    for text, response_url in jobs:
        body = slash_command_body(text, user_id=USER, channel_id=CHANNEL, response_url=response_url)
        head = "".join(f"{k}: {v}\r\n" for k, v in signed_headers(body, SECRET).items())
        requests.append(
            (
                text,
                f"POST {parts.path} HTTP/1.1\r\nHost: {host}:{port}\r\n{head}"
                f"Content-Length: {len(body.encode())}\r\nConnection: close\r\n\r\n{body}".encode(),
            )
        )

    class Exchange(asyncio.Protocol):
        """One request on its own connection; `done` gets (seconds, status line) once it is read."""

        def __init__(self, request: bytes, done: asyncio.Future[tuple[float, bytes]], started: float) -> None:
            self.request, self.done, self.started, self.received = request, done, started, b""

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            transport.write(self.request)  # type: ignore[attr-defined]

        def data_received(self, data: bytes) -> None:
            self.received += data
            if not self.done.done() and b"\r\n" in self.received:
                self.done.set_result((time.perf_counter() - self.started, self.received.split(b"\r\n")[0]))
                self.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            if not self.done.done():
                self.done.set_exception(exc or ConnectionError("closed before a status line"))

    async def one(gate: asyncio.Semaphore, text: str, request: bytes) -> float:
        async with gate:
            loop = asyncio.get_running_loop()
            done: asyncio.Future[tuple[float, bytes]] = loop.create_future()
            started = time.perf_counter()
            await loop.create_connection(lambda: Exchange(request, done, started), host, port)
            seconds, status_line = await asyncio.wait_for(done, 30)
            if status_line.split()[1:2] != [b"200"]:
                raise RuntimeError(f"/docker {text}: {status_line!r}")
            return seconds

    async def all_of_them() -> list[float]:
        gate = asyncio.Semaphore(clients)
        return list(await asyncio.gather(*(one(gate, text, req) for text, req in requests)))

    start = time.time()
    latencies = uvloop.run(all_of_them())
    return latencies, start, time.time()


def missing_replies(slack: FakeSlack, tags: Iterable[str], timeout: float) -> set[str]:
    """Tags with no response_url call after waiting up to `timeout` seconds for all of them."""
    wanted = set(tags)
    deadline = time.monotonic() + timeout
    while True:
        seen = {c.tag for c in slack.calls("response_url")}
        missing = wanted - seen
        if not missing or time.monotonic() > deadline:
            return missing
        time.sleep(0.1)


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


def ack_histogram_p(metrics_text: str, pct: float) -> float | None:
    """The bot's own ack histogram: the smallest bucket bound holding `pct`% of acks, in seconds."""
    buckets = []
    for line in metrics_text.splitlines():
        found = re.match(r'dockerbot_ack_seconds_bucket\{le="([^"]+)"\} ([\d.e+]+)', line)
        if found:
            buckets.append((float(found.group(1)), float(found.group(2))))
    if not buckets or buckets[-1][1] == 0:
        return None
    total = buckets[-1][1]
    for bound, count in buckets:
        if count >= total * pct / 100:
            return bound
    return None


@contextlib.contextmanager
def running(
    slack: FakeSlack, mode: Mode, data_dir: Path, extra_env: dict[str, str] | None = None
) -> Iterator[BotProcess]:
    bot = BotProcess(slack, mode, data_dir, extra_env).start()
    try:
        yield bot
    finally:
        bot.stop()
