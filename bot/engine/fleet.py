"""Running one thing on many hosts at once: in parallel, each with a deadline, so one slow or
dead host is reported as such and never holds the others past the timeout."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Generic, TypeVar

from bot.engine.hosts import DockerHost
from bot.render.messages import File, Message, code_blocks, context, header, section
from bot.render.text import render

T = TypeVar("T")


@dataclass(frozen=True)
class HostResult(Generic[T]):
    host: str
    value: T | None = None
    error: BaseException | None = None
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and not self.timed_out


# Threads of one fan-out: one per host, so that every host starts at once. With fewer, the hosts
# past the first batch waited for a free thread (100 hosts took three rounds of the slowest host's
# time), and a dead host held its thread for the whole deadline.
MAX_FLEET_THREADS = 256


def fan_out(hosts: list[DockerHost], work: Callable[[DockerHost], T], timeout: float) -> list[HostResult[T]]:
    """`work(host)` on every host in parallel; results in the hosts' order."""
    results, _ = fan_out_answering(hosts, work, timeout, probe=None, probe_timeout=timeout)
    return results


def fan_out_answering(
    hosts: list[DockerHost],
    work: Callable[[DockerHost], T],
    timeout: float,
    *,
    probe: Callable[[DockerHost], object] | None,
    probe_timeout: float,
) -> tuple[list[HostResult[T]], set[str]]:
    """`fan_out` for long work (a scheduled cleanup): on each host `probe(host)` first, then `work`.
    A host whose probe has not returned after `probe_timeout` is given up on then, and named in the
    second value (silent); the others get `timeout` for their work, which starts as soon as their
    own probe returns, not when the slowest host's does."""
    probed = {host.name: threading.Event() for host in hosts}
    lock = threading.Lock()
    given_up: set[str] = set()  # reported as silent: their work must not start later, unreported

    def run(host: DockerHost) -> T:
        try:
            if probe is not None:
                probe(host)
        finally:
            with lock:
                late = host.name in given_up
                probed[host.name].set()
        if late:
            raise TimeoutError(f"{host.name} answered after the fleet had given up on it")
        return work(host)

    # Deadlines count from now: starting 100 threads takes a few tenths of a second on a busy machine.
    started = time.monotonic()
    pool = ThreadPoolExecutor(max_workers=min(MAX_FLEET_THREADS, len(hosts)) or 1, thread_name_prefix="fleet")
    futures = [pool.submit(run, host) for host in hosts]
    silent: set[str] = set()
    if probe is not None:
        deadline = started + probe_timeout
        for host in hosts:
            probed[host.name].wait(max(0.0, deadline - time.monotonic()))
        with lock:
            silent = {host.name for host in hosts if not probed[host.name].is_set()}
            given_up.update(silent)
    waiting = [f for h, f in zip(hosts, futures, strict=True) if h.name not in silent]
    done, _ = wait(waiting, timeout=max(0.0, started + timeout - time.monotonic()))
    # A host still working is left to finish on its own thread; nobody waits for it any more.
    pool.shutdown(wait=False, cancel_futures=True)
    results: list[HostResult[T]] = []
    for host, future in zip(hosts, futures, strict=True):
        if future not in done:
            results.append(HostResult(host.name, timed_out=True))
        elif future.exception() is not None:
            results.append(HostResult(host.name, error=future.exception()))
        else:
            results.append(HostResult(host.name, value=future.result()))
    return results, silent


class CapturingReply:
    """A Reply that keeps each message's latest state, for combining hosts into one message."""

    def __init__(self) -> None:
        self.messages: dict[int, Message] = {}

    def send(self, message: Message, *, live: bool = False) -> int:
        ref = len(self.messages)
        self.messages[ref] = message
        return ref

    def update(self, ref: int, message: Message, *, final: bool = False) -> None:  # type: ignore[override]
        self.messages[ref] = message

    def private(self, message: Message) -> None:
        self.send(message)


def fleet_message(
    title: str, results: list[HostResult[list[Message]]], describe: Callable[[HostResult], str]
) -> Message:
    """One message for many hosts, hostname first. When the hosts' own messages do not fit one
    Slack message, each host gets a line and the full text comes as a file."""
    failed = [r for r in results if not r.ok]
    summary = f"{title}: {len(results) - len(failed)} of {len(results)} hosts answered"
    blocks = [header(title)]
    for result in results:
        if result.ok:
            blocks.append(context(f"*{result.host}*"))
            blocks += [
                b for m in result.value or [] for b in m.blocks if b.get("type") not in ("actions", "header")
            ]
        else:
            blocks.append(section(f":x: *{result.host}* — {describe(result)}"))
    if len(blocks) <= 48:
        return Message(text=summary, blocks=[*blocks, context(summary)], in_channel=True)
    lines = [
        f"{r.host}: " + ((r.value[-1].text if r.value else "no output") if r.ok else describe(r))
        for r in results
    ]
    full = "\n\n".join(
        f"== {r.host} ==\n" + ("\n\n".join(render(m) for m in r.value or []) if r.ok else describe(r))
        for r in results
    )
    return Message(
        text=summary,
        blocks=[header(title), *code_blocks("\n".join(lines)), context(summary)],
        in_channel=True,
        files=[File(name="fleet.txt", content=full, title=title)],
    )
