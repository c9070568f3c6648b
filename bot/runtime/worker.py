"""The served bot runs in two processes: this one talks to Slack, a worker process runs the commands.

Slack wants every request acknowledged within 3 s, and we aim for 100 ms at p99. In one Python
process the ack would queue for the GIL behind dozens of worker threads rendering tables, parsing
a pull's progress and running a cleanup; measured, that put p99 near 300 ms. So the process that
receives, verifies and acknowledges requests does nothing else: it forwards each acknowledged
request over a pipe to the worker process, which has its own GIL, the thread pool, the scheduler
and the last-use ledger, and answers Slack itself.

The worker is supervised: it dies with this process (PR_SET_PDEATHSIG), is restarted with backoff
if it ends unexpectedly, and on shutdown finishes its replies before this process exits.

It is a fresh interpreter (`python -m bot.runtime.worker`), started with subprocess rather than
multiprocessing: fork would copy our threads' locks, and multiprocessing's spawn and forkserver
also start a resource tracker process (12 MB of RSS) that would track nothing here, since the bot
makes no named semaphores or shared memory. The pipe between the two is a multiprocessing
Connection all the same.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import itertools
import logging
import multiprocessing
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from slack_sdk import WebClient

    from bot.state.live_messages import LiveMessages

log = logging.getLogger("dockerbot.worker")

_STOP = ("stop",)
_BATCH = 256  # requests forwarded in one message at most
_DONE_EVERY = 0.05  # seconds: the worker reports finished jobs in batches, at most this often
WORKER_NICENESS = 10
_PR_SET_PDEATHSIG = 1


class WorkerFailed(Exception):
    """The worker could not start (its message says why, e.g. a configuration error)."""


class WorkerProcess:
    """The front process's handle on the worker: a `Dispatch` that forwards over a pipe.

    Forwarding never blocks the ack: requests go into an in-memory queue, and one thread sends
    them on, holding them while a restarted worker comes up."""

    def __init__(
        self, slack: WebClient | None = None, *, restart_backoff: tuple[float, float] = (1.0, 30.0)
    ) -> None:
        self._slack = slack  # to mark the messages of jobs a dead worker left (see `_mark_interrupted`)
        self._outbox: queue.Queue[tuple[Any, ...] | None] = queue.Queue()
        self._backoff = restart_backoff
        self._lock = threading.Condition()
        self._conn: Connection | None = None  # the live worker's pipe, once it said it is ready
        self._process: WorkerChild | None = None
        self._stopping = threading.Event()
        self._started = threading.Event()
        self._failure: str | None = None
        # Commands and button presses sent to the worker and not finished there yet, by job number:
        # if the worker dies, their users are told (see `_tell_interrupted`). Those still queued
        # here go to the next worker instead.
        self._jobs = itertools.count(1)
        self._in_flight: dict[int, tuple[str, dict[str, Any]]] = {}
        # Messages those jobs posted to update as they go (channel, ts): marked if the worker dies.
        self._live: dict[int, list[tuple[str, str]]] = {}
        self._in_flight_lock = threading.Lock()
        self._supervisor = threading.Thread(target=self._supervise, name="worker-supervisor", daemon=True)

    # --- Dispatch ----------------------------------------------------------------------------------
    def command(self, body: dict[str, Any]) -> None:
        self._send("command", body)

    def button(self, body: dict[str, Any]) -> None:
        self._send("button", body)

    def home_opened(self, user: str) -> None:
        self._outbox.put(("home_opened", 0, user))  # job 0: nobody waits for an answer

    def _send(self, kind: str, body: dict[str, Any]) -> None:
        self._outbox.put((kind, next(self._jobs), body))

    # --- life --------------------------------------------------------------------------------------
    def start(self, timeout: float = 120) -> None:
        """Start the worker and wait until it is ready; WorkerFailed if it could not start."""
        # The supervisor spawns every worker: PR_SET_PDEATHSIG follows the spawning *thread*.
        self._supervisor.start()
        threading.Thread(target=self._forward, name="worker-forward", daemon=True).start()
        if not self._started.wait(timeout):
            raise WorkerFailed(f"the worker process did not start within {timeout:g} s")
        if self._failure is not None:
            raise WorkerFailed(self._failure)

    def alive(self) -> bool:
        return self._conn is not None

    def stop(self, timeout: float = 25) -> None:
        """Let the worker finish what it was sent (running pulls end with a message), then end it."""
        self._stopping.set()
        self._outbox.put(_STOP)
        process = self._process
        if process is None:
            return
        process.join(timeout)
        if process.exitcode is None:
            log.warning("the worker did not stop within %g s; killing it", timeout)
            process.kill()
            process.join(5)
        self._supervisor.join(5)  # it tells the users of requests the worker did not get to
        self._outbox.put(None)

    # --- threads -----------------------------------------------------------------------------------
    def _supervise(self) -> None:
        delay = self._backoff[0]
        while not self._stopping.is_set():
            parent_end, process = start_worker_process()
            self._process = process
            message = _first_message(parent_end, process)
            if message and message[0] == "ready":
                with self._lock:
                    self._conn = parent_end
                    self._lock.notify_all()
                self._started.set()
                delay = self._backoff[0]
            elif not self._started.is_set():  # the first start failed: the bot cannot serve
                process.join()
                self._failure = message[1] if message else f"the worker exited with code {process.exitcode}"
                process.close()
                self._started.set()
                return
            self._watch(parent_end, process)
            _forget_metrics_of(process.pid)
            with self._lock:
                self._conn = None
            parent_end.close()
            with self._in_flight_lock:
                lost, self._in_flight = list(self._in_flight.values()), {}
                live, self._live = [ref for refs in self._live.values() for ref in refs], {}
            if lost:
                notice = threading.Thread(
                    target=self._tell, args=(lost, live, self._stopping.is_set()), name="worker-lost"
                )
                notice.start()  # not a daemon: the notices go out even if this process is ending
            if self._stopping.is_set():
                return
            log.error(
                "the worker process ended unexpectedly (exit code %s, %d requests unfinished); "
                "restarting it in %g s",
                process.exitcode,
                len(lost),
                delay,
            )
            self._stopping.wait(delay)
            delay = min(delay * 2, self._backoff[1])

    def _watch(self, conn: Connection, process: Any) -> None:
        """Until the worker exits: note each job it reports finished, and each live message it posts."""
        while True:
            ready = wait([conn, process.sentinel])
            try:
                while conn.poll():  # all it said, also what it said just before it went
                    kind, *said = conn.recv()
                    with self._in_flight_lock:
                        if kind == "done":
                            for job in said[0]:
                                self._in_flight.pop(job, None)
                                self._live.pop(job, None)
                        elif kind == "live" and said[0] in self._in_flight:
                            self._live.setdefault(said[0], []).append((said[1], said[2]))
            except (EOFError, OSError):
                pass  # its end of the pipe closed: it is gone
            else:
                if process.sentinel not in ready:
                    continue
            process.join()
            process.close()
            return

    def _tell(
        self, lost: list[tuple[str, dict[str, Any]]], live: list[tuple[str, str]], shutdown: bool
    ) -> None:
        _tell_interrupted(lost, shutdown)
        if live and self._slack is not None:
            _mark_interrupted(self._slack, live)

    def _forward(self) -> None:
        """Send queued requests on to the worker, all that are waiting in one message: under a burst
        this thread then wakes, and takes the GIL from the thread that acks, once per batch instead
        of once per request."""
        while True:
            batch = [self._outbox.get()]
            with contextlib.suppress(queue.Empty):
                while batch[-1] is not None and len(batch) < _BATCH:
                    batch.append(self._outbox.get_nowait())
            ending = batch[-1] is None
            messages = [m for m in batch if m is not None]
            if messages:
                self._deliver(messages)
            if ending or _STOP in messages:
                return

    def _deliver(self, messages: list[tuple[Any, ...]]) -> None:
        jobs = {m[1]: (m[0], m[2]) for m in messages if len(m) > 2 and m[1]}
        while True:
            with self._lock:
                while self._conn is None and not self._stopping.is_set():
                    self._lock.wait(1.0)
                conn = self._conn
            if conn is None:  # stopping, and no worker to take them
                _tell_interrupted(list(jobs.values()), shutting_down=True)
                return
            with self._in_flight_lock:  # in flight before they are sent: the worker may finish one at once
                self._in_flight.update(jobs)
            try:
                conn.send(("batch", messages))
                return
            except OSError:  # the worker just died: the next one gets them
                with self._in_flight_lock:
                    for number in jobs:
                        self._in_flight.pop(number, None)
                with self._lock:
                    if self._conn is conn:
                        self._conn = None


def _forget_metrics_of(pid: int) -> None:
    """A dead worker's gauges (it held the scheduler lease, say) must not stay in /metrics."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def _tell_interrupted(lost: list[tuple[str, dict[str, Any]]], shutting_down: bool) -> None:
    """Say so to each user whose command or button press the worker did not finish: it died, or
    the bot shut down before it got to them."""
    from slack_sdk.webhook import WebhookClient

    from bot.slack.client import retry_handlers

    for kind, body in lost:
        if not body.get("response_url"):
            continue
        what = f"`/docker {body.get('text', '')}`" if kind == "command" else "your button press"
        if shutting_down:
            text = f":warning: The bot shut down before it finished {what}: run it again when it is back."
        else:
            text = (
                f":warning: The bot's worker process stopped while running {what}, and is being restarted. "
                "It may not have finished: check, and run it again if needed."
            )
        try:
            WebhookClient(body["response_url"], retry_handlers=retry_handlers()).send(
                text=text, response_type="ephemeral", replace_original=False
            )
        except Exception:  # the notice is a courtesy; the restart goes on regardless
            log.exception("could not tell a user their request was interrupted")


def _mark_interrupted(slack: WebClient, live: list[tuple[str, str]]) -> None:
    """Stop live messages (a pull's progress) from claiming a job a dead worker left is still going."""
    text = (
        ":warning: Interrupted: the bot's worker process stopped before this finished, and this "
        "message is no longer updated. Check with `/docker images`, and run it again if needed."
    )
    for channel, ts in live:
        try:
            slack.chat_update(channel=channel, ts=ts, text=text, blocks=[])
        except Exception:  # as for the notices: a courtesy; the restart goes on
            log.exception("could not mark an interrupted message")


class WorkerChild:
    """The worker process, as the front sees it: `sentinel` is readable once it has exited."""

    def __init__(self, popen: subprocess.Popen[bytes], sentinel: int) -> None:
        self._popen = popen
        self.sentinel = sentinel
        self.pid = popen.pid

    @property
    def exitcode(self) -> int | None:
        return self._popen.poll()

    def join(self, timeout: float | None = None) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._popen.wait(timeout)

    def kill(self) -> None:
        self._popen.kill()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.sentinel)


def start_worker_process() -> tuple[Connection, WorkerChild]:
    """Start `python -m bot.runtime.worker` (same interpreter, working directory and environment as
    this process's `python -m bot`, so it finds the same bot) with its end of a duplex pipe and the
    write end of a sentinel pipe, which closes when it exits (as multiprocessing's sentinel does)."""
    ours, theirs = multiprocessing.Pipe()
    sentinel, held = os.pipe()
    fds = (theirs.fileno(), held)
    try:
        popen = subprocess.Popen(
            [sys.executable, "-m", "bot.runtime.worker", *map(str, fds)],
            pass_fds=fds,
            stdin=subprocess.DEVNULL,
            env=_finding_this_bot(os.environ),
        )
    except BaseException:
        ours.close()
        os.close(sentinel)
        raise
    finally:
        theirs.close()
        os.close(held)
    return ours, WorkerChild(popen, sentinel)


def _finding_this_bot(env: os._Environ[str]) -> dict[str, str]:
    """The environment, with this bot's directory first on PYTHONPATH: the worker imports the same
    code as the front even when the front was not started from the project's directory."""
    root = str(Path(__file__).resolve().parents[2])
    rest = env.get("PYTHONPATH")
    return {**env, "PYTHONPATH": root + (os.pathsep + rest if rest else "")}


def _first_message(conn: Connection, process: Any) -> tuple[Any, ...] | None:
    """The worker's "ready" or ("failed", why); None if it died without a word."""
    while True:
        ready = wait([conn, process.sentinel])
        if conn in ready:
            try:
                return tuple(conn.recv())
            except EOFError:
                return None
        if process.sentinel in ready:
            return None


# --- the worker process itself ----------------------------------------------------------------------
def _die_with_parent() -> None:
    """Ask Linux to SIGKILL us when the front process dies: a worker must never outlive it, or a
    restarted bot would run two schedulers."""
    parent = os.getppid()
    # Not on Linux, there is no prctl: the pipe's EOF still ends us (see run_worker).
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def main(argv: list[str]) -> None:
    """(In the worker process.) `python -m bot.runtime.worker PIPE_FD SENTINEL_FD`, as
    start_worker_process runs it."""
    pipe, sentinel = (int(fd) for fd in argv)
    for fd in (pipe, sentinel):  # ours alone: a process we start must not hold the front's pipes
        os.set_inheritable(fd, False)
    run_worker(Connection(pipe))  # the sentinel stays open until this process exits


def run_worker(conn: Connection) -> None:
    """(In the worker process.) Build everything the commands need, then run what arrives."""
    _die_with_parent()
    # SIGTERM/SIGINT are for the front process, which stops us in order (systemd and a terminal's
    # Ctrl-C signal the whole group; the front's "stop" is what counts).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from bot.core.config_file import ConfigError
    from bot.core.router import Router
    from bot.core.services import build_services
    from bot.logs import setup_logging
    from bot.runtime.startup import freeze_start_up_objects, load_settings, secrets_of, start_background
    from bot.slack.client import make_web_client
    from bot.slack.dispatch import LocalDispatch
    from bot.slack.reply import SlackPoster
    from handlers import COMMANDS

    settings = load_settings()
    setup_logging(settings.log_level, settings.log_format, secrets_of(settings))
    # Below the front process, so that under load acks get the CPU first; replies can wait a little.
    try:
        os.nice(WORKER_NICENESS)
    except OSError as error:  # e.g. a seccomp filter without setpriority: run at the same priority
        log.warning("could not lower the worker's priority: %s", error)
    try:
        services = build_services(settings, COMMANDS)
    except ConfigError as error:
        conn.send(("failed", f"Configuration error:\n{error}"))
        sys.exit(2)
    router = Router(services)
    client = make_web_client(settings)
    work = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="work")
    dispatch = LocalDispatch(router, client, work)
    start_background(services, SlackPoster(client), functools.partial(_mark_interrupted, client))
    freeze_start_up_objects()
    conn.send(("ready",))
    reports = JobReports(conn, services.live_messages)

    def take(kind: str, job: int, arg: Any) -> None:
        hooks = {"done": functools.partial(reports.done, job), "live": functools.partial(reports.live, job)}
        try:
            getattr(dispatch, kind)(arg, **(hooks if job else {}))
        except Exception:  # one malformed request must not end the worker
            log.exception("could not take a %s request", kind)
            if job:
                reports.done(job)

    stopping = False
    while not stopping:
        try:
            _, messages = conn.recv()  # ("batch", [(kind, job, arg), ...])
        except EOFError:  # the front process is gone
            break
        for kind, *rest in messages:
            if kind == _STOP[0]:
                stopping = True
                break
            take(kind, *rest)
    finish(router.services, work)
    reports.close()


class JobReports:
    """(In the worker.) Tells the front which jobs finished, in one message per `_DONE_EVERY`
    seconds at most (a message per job would wake the front's threads once per job), and at once
    of each message a job posted to update as it goes, which the front marks if the worker dies."""

    def __init__(self, conn: Connection, shared: LiveMessages | None = None) -> None:
        self._conn = conn
        # Several replicas: each live message is also in the database, for the replicas that stay
        # to mark it should this one die (bot.state.live_messages).
        self._shared = shared
        self._live_refs: dict[int, list[tuple[str, str]]] = {}
        self._sending = threading.Lock()
        self._jobs: list[int] = []
        self._with_live: set[int] = set()
        self._wake = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="job-reports", daemon=True)
        self._thread.start()

    def done(self, job: int) -> None:
        for channel, ts in self._live_refs.pop(job, []):
            self._share(lambda shared, c=channel, t=ts: shared.remove(c, t))
        with self._wake:
            if job in self._with_live:  # at once: a worker dying meanwhile must not mark its message
                self._with_live.discard(job)
                self._send(("done", [job]))
                return
            self._jobs.append(job)
            self._wake.notify()

    def live(self, job: int, ref: Any) -> None:
        with self._wake:
            self._with_live.add(job)
        self._send(("live", job, ref.channel, ref.ts))
        self._live_refs.setdefault(job, []).append((ref.channel, ref.ts))
        self._share(lambda shared: shared.add(ref.channel, ref.ts))

    def _share(self, change: Callable[[LiveMessages], None]) -> None:
        if self._shared is None:
            return
        try:
            change(self._shared)
        except Exception:  # the message still works; only its marking after a crash is lost
            log.exception("could not record a live message for the other replicas")

    def _send(self, message: tuple[Any, ...]) -> None:
        with self._sending, contextlib.suppress(OSError):
            self._conn.send(message)

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(5)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._jobs and not self._closed:
                    self._wake.wait()
                jobs, self._jobs, closed = self._jobs, [], self._closed
            if jobs:
                self._send(("done", jobs))
            if closed:
                return
            time.sleep(_DONE_EVERY)


def finish(services: Any, work: ThreadPoolExecutor) -> None:
    """End running pulls with a message that says so, let the other work finish, close up."""
    services.pulls.interrupt_all("the bot is shutting down; run the pull again when it is back")
    work.shutdown(wait=True, cancel_futures=True)  # replies to interrupted pulls go out here
    services.stop_background(wait=True)
    services.close()


if __name__ == "__main__":
    main(sys.argv[1:])
