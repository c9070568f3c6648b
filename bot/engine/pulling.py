"""Image pulls on an engine: the streamed events as the CLI shows them, shared between requests.

- Each event is checked for `error`/`errorDetail` (docker-py's high-level pull ignores them). As in
  the CLI, errors before the stream read "Error response from daemon: …", errors in it are bare.
- A process-wide registry keyed by (host, canonical ref) makes a second request for an image that
  is already being pulled follow that pull instead of starting another one on the engine.
- A stalled registry cannot hang a worker: the engine sends nothing (not even the HTTP headers)
  until the registry answers, so the inactivity limit is the socket's read timeout, which bounds
  every wait for the next byte, headers included.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import docker
import requests
import urllib3
from docker import auth as docker_auth

from bot import metrics
from bot.engine.compat import post_stream
from bot.engine.hosts import DockerHost
from bot.engine.reference import Reference
from bot.errors import UserError
from bot.render.formatting import human_size_4, progress_bar, progress_counts

log = logging.getLogger("dockerbot.pull")

BAR_WIDTH = 20  # the CLI draws 50 cells on wide terminals; Slack code blocks are narrower
_HUB_NAMES = ("docker.io", "index.docker.io", "registry-1.docker.io", "https://index.docker.io/v1/")
_READ_TIMEOUTS = (requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError, TimeoutError)
_BROKEN_STREAM = (urllib3.exceptions.ProtocolError, requests.exceptions.ChunkedEncodingError)

# (markers in the engine's lower-cased message, a one-line hint). First match wins.
_HINTS: list[tuple[tuple[str, ...], str]] = [
    (
        ("pull access denied", "repository does not exist", "access to the resource is denied"),
        "Check the image name. If the repository is private, the bot needs credentials for `{registry}`.",
    ),
    (
        ("unauthorized", "no basic auth credentials", "authentication required", "failed to authorize"),
        "The registry `{registry}` wants credentials: add them to the bot's configuration.",
    ),
    # `manifest for X not found` (classic store); `failed to resolve reference "X": X: not found` (containerd)
    (
        ("manifest unknown", "manifest for", ": not found"),
        "The repository has no such tag or digest: check the spelling.",
    ),
    (("no matching manifest",), "The image is not built for this Docker host's platform."),
    (("toomanyrequests",), "The registry's pull rate limit was reached: try again later."),
    (
        ("no space left on device",),
        "The Docker host is out of disk space: `/docker cleanup preview` shows what can go.",
    ),
    (
        ("http response to https client",),
        "The registry speaks plain HTTP: the engine must list it under `insecure-registries`.",
    ),
    (
        (
            "dial tcp",
            "connection refused",
            "no such host",
            "i/o timeout",
            "proxyconnect",
            "tls handshake timeout",
            "network is unreachable",
            "server misbehaving",
            "connection reset",
        ),
        "The engine could not reach the registry `{registry}`.",
    ),
]


class PullError(UserError):
    """A pull that failed, with the progress lines shown until then and a hint for the user."""

    def __init__(self, text: str, lines: tuple[str, ...] = (), hint: str = "") -> None:
        super().__init__(text)
        self.text = text
        self.lines = lines
        self.hint = hint

    @classmethod
    def from_engine(cls, message: str, registry: str, lines: tuple[str, ...] = ()) -> PullError:
        """An HTTP error before the stream: the CLI prefixes these with "Error response from daemon"."""
        return cls(f"Error response from daemon: {message}", lines, engine_hint(message, registry))

    @classmethod
    def from_stream(cls, message: str, registry: str) -> PullError:
        """An error event in the stream: the CLI prints these bare (jsonmessage.JSONError)."""
        return cls(message, (), engine_hint(message, registry))

    def copy(self) -> PullError:
        """A fresh exception per waiting thread (one object must not collect several tracebacks)."""
        return PullError(self.text, self.lines, self.hint)


def engine_hint(message: str, registry: str) -> str:
    lowered = message.lower()
    for markers, hint in _HINTS:
        if any(m in lowered for m in markers):
            return hint.format(registry=registry)
    return ""


def registry_auth(settings: object, registry_host: str) -> dict[str, str] | None:
    """Credentials for `registry_host` from `settings.registry_auth` ({host: {username, password}};
    Docker Hub under any of its names).

    The result goes only into the engine's X-Registry-Auth header: never log it or show it.
    """
    table = getattr(settings, "registry_auth", None)
    if not isinstance(table, Mapping):
        return None
    names = _HUB_NAMES if registry_host in _HUB_NAMES else (registry_host,)
    for name in names:
        entry = table.get(name)
        username = _field(entry, "username")
        if username:
            password = _field(entry, "password")
            return {"username": username, "password": password, "serveraddress": registry_host}
    return None


def _field(entry: Any, name: str) -> str:
    """A field of a {username, password} mapping or model; SecretStr values revealed."""
    value = entry.get(name) if isinstance(entry, Mapping) else getattr(entry, name, None)
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    return str(value) if value else ""


# ---------------------------------------------------------------------------------------- progress


@dataclass(frozen=True)
class PullSnapshot:
    """What a pull looks like now: the CLI's lines, and the final Digest/Status once it has them."""

    lines: tuple[str, ...] = ()
    digest: str | None = None  # "sha256:…"
    status: str | None = None  # "Status: Downloaded newer image for ubuntu:latest"


def progress_text(detail: Mapping[str, Any]) -> str:
    """jsonmessage `JSONProgress.String`: bar and counts, "N s" for containerd's extraction timer."""
    current = int(detail.get("current") or 0)
    total = int(detail.get("total") or 0)
    units = str(detail.get("units") or "")
    if current <= 0 and total <= 0:
        return ""
    if total <= 0:
        return f"{current} {units}" if units else human_size_4(current)
    counts = "" if detail.get("hidecounts") else progress_counts(current, total, units, pad=0)
    return f"{progress_bar(current, total, BAR_WIDTH)} {counts}".rstrip()


def event_line(event: Mapping[str, Any]) -> str:
    status = str(event.get("status") or "")
    progress = progress_text(event.get("progressDetail") or {})
    text = f"{status} {progress}" if progress else status
    return f"{event['id']}: {text}" if event.get("id") else text


class PullProgress:
    """The terminal view of a pull: a line per id (header, layers) updated in place, others appended."""

    def __init__(self, registry: str) -> None:
        self.registry = registry
        self._lines: list[str] = []
        self._by_id: dict[str, int] = {}
        self.digest: str | None = None
        self.status: str | None = None

    def apply(self, event: Mapping[str, Any]) -> None:
        if "error" in event or "errorDetail" in event:
            detail = event.get("errorDetail") or {}
            message = detail.get("message") if isinstance(detail, Mapping) else None
            raise PullError.from_stream(str(message or event.get("error") or "unknown error"), self.registry)
        line = event_line(event)
        if not line:
            return
        key = event.get("id")
        if key:
            if key in self._by_id:
                self._lines[self._by_id[key]] = line
                return
            self._by_id[str(key)] = len(self._lines)
        self._lines.append(line)
        status = str(event.get("status") or "")
        if not key and status.startswith("Digest: "):
            self.digest = status.removeprefix("Digest: ").strip()
        elif not key and status.startswith("Status: "):
            self.status = status

    def snapshot(self) -> PullSnapshot:
        return PullSnapshot(tuple(self._lines), self.digest, self.status)


# ---------------------------------------------------------------------------------------- engine


def open_pull_stream(
    api: docker.APIClient,
    ref: Reference,
    auth: dict[str, str] | None,
    inactivity_timeout: float,
) -> tuple[requests.Response, Iterator[dict[str, Any]]]:
    """`APIClient.pull(repo, tag, stream=True, decode=True, auth_config=auth)` with a read timeout.

    docker-py's pull hard-codes `timeout=None`, and the engine holds back even the response headers
    until the registry has sent the manifest, so a watchdog could not close a response that does not
    exist yet. Query and headers are built as `pull` and the CLI build them: fromImage is the
    familiar name, `tag` the tag or (winning over it) the digest.
    """
    params = {"fromImage": ref.familiar_name, "tag": ref.digest or ref.tag or "latest"}
    headers: dict[str, str] = {}
    if auth is not None:
        headers["X-Registry-Auth"] = docker_auth.encode_header(auth).decode("ascii")
    else:  # as pull() does: the credentials of the bot's own docker config, if any
        registry, _ = docker_auth.resolve_repository_name(ref.familiar_name)
        header = docker_auth.get_config_header(api, registry)
        if header:
            headers["X-Registry-Auth"] = header.decode("ascii")
    return post_stream(api, "/images/create", params=params, headers=headers, read_timeout=inactivity_timeout)


Listener = Callable[[PullSnapshot], None]


class PullJob:
    """One engine pull and everyone following it. Listeners are called in order, under a lock,
    from the pulling thread: they must be quick and must not block (LiveMessage.show is)."""

    def __init__(self, host: DockerHost, ref: Reference) -> None:
        self.host = host
        self.ref = ref
        self._lock = threading.Lock()
        self._progress = PullProgress(ref.domain)
        self._listeners: list[Listener] = []
        self._done = threading.Event()
        self._result: PullSnapshot | None = None
        self._error: BaseException | None = None
        self._response: requests.Response | None = None
        self.interrupted: str | None = None  # why the bot stopped this pull (shutdown)

    def interrupt(self, reason: str) -> None:
        """Stop reading the engine's stream; the waiters get a PullError that says why."""
        self.interrupted = reason
        if self._response is not None:
            _abort(self._response)

    def attach(self, listener: Listener) -> None:
        """Follow the pull: `listener` gets the current state now, then every change."""
        with self._lock:
            self._listeners.append(listener)
            self._call(listener, self._progress.snapshot())

    def run(
        self, auth: dict[str, str] | None, inactivity_timeout: float, deadline: float | None = None
    ) -> None:
        """Pull on the engine (in the calling thread) and keep the outcome for `wait`. `deadline`:
        the most the whole pull may take; the engine reports progress for every chunk, so a registry
        that trickles bytes would keep it under any inactivity limit for ever."""
        response: requests.Response | None = None
        downloaded: dict[str, int] = {}
        timer: threading.Timer | None = None
        if deadline is not None:
            reason = f"it ran longer than {deadline:g} s, the most a pull may take"
            timer = threading.Timer(deadline, self.interrupt, args=(reason,))
            timer.daemon = True
            timer.start()
        try:
            response, events = open_pull_stream(self.host.api, self.ref, auth, inactivity_timeout)
            self._response = response
            if self.interrupted:
                response.close()
            for event in events:
                if event.get("status") == "Downloading" and event.get("id"):
                    current = int((event.get("progressDetail") or {}).get("current") or 0)
                    downloaded[event["id"]] = max(downloaded.get(event["id"], 0), current)
                with self._lock:
                    self._progress.apply(event)
                    snapshot = self._progress.snapshot()
                    for listener in self._listeners:
                        self._call(listener, snapshot)
            with self._lock:
                snapshot = self._progress.snapshot()
            if snapshot.status is None:
                raise PullError("The engine ended the pull without a result.", snapshot.lines)
            self._result = snapshot
        except PullError as error:
            error.lines = error.lines or self._lines()
            self._error = error
        except _READ_TIMEOUTS:
            self._error = PullError(
                f"No progress from the registry for {inactivity_timeout:g} s; the pull was stopped.",
                self._lines(),
                f"Check that `{self.ref.domain}` is up, or try again later.",
            )
        except _BROKEN_STREAM:
            self._error = PullError(
                "The engine closed the connection before the pull finished.",
                self._lines(),
                "Check that the Docker engine is still running, then try again.",
            )
        except docker.errors.APIError as error:
            message = str(error.explanation or error)
            self._error = PullError.from_engine(message, self.ref.domain, self._lines())
        except BaseException as error:  # noqa: BLE001 - kept for every waiter; the router describes it
            self._error = error
        finally:
            if timer is not None:
                timer.cancel()
            if response is not None:
                response.close()  # frees the connection; the engine stops a pull nobody reads
            if self.interrupted:
                self._error = PullError(f"The pull was interrupted: {self.interrupted}.", self._lines())
            metrics.PULLS.labels("failed" if self._error else "ok").inc()
            metrics.PULL_BYTES.inc(sum(downloaded.values()))

    def complete(self) -> None:
        self._done.set()

    def wait(self) -> PullSnapshot:
        self._done.wait()
        if isinstance(self._error, PullError):
            raise self._error.copy()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def _lines(self) -> tuple[str, ...]:
        with self._lock:
            return self._progress.snapshot().lines

    @staticmethod
    def _call(listener: Listener, snapshot: PullSnapshot) -> None:
        try:
            listener(snapshot)
        except Exception:  # one follower's broken message must not stop the pull for all
            log.warning("a pull listener failed", exc_info=True)


def _abort(response: requests.Response) -> None:
    """Wake a thread blocked reading `response`: closing a socket from another thread does not
    interrupt a recv() in progress on Linux, shutting it down does."""
    try:
        raw = response.raw._fp.fp.raw  # socket.SocketIO over the engine connection
        sock = getattr(raw, "_sock", None)
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
    except (AttributeError, OSError):
        pass
    response.close()


class PullBusy(UserError):
    """A pull refused because as many as allowed are already running (for the user, the host or the
    bot): nothing reaches the engine."""


class PullSlots:
    """How many pulls may wait on engines at once: per user, per host and in all. Each waits in a
    worker thread for as long as the registry keeps it going, so without caps a registry that never
    answers could take every worker, and reads (`images`, `inspect`) would wait behind the pulls.
    The total cap keeps the rest of the workers for everything else."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users: dict[str, int] = {}
        self._hosts: dict[str, int] = {}
        self._total = 0

    @contextmanager
    def take(self, user: str, host: str, *, per_user: int, per_host: int, total: int) -> Iterator[None]:
        with self._lock:
            if self._total >= total:
                raise PullBusy(
                    f"The bot is already running {self._total} pulls, as many as it runs at once. "
                    "Try again when one has finished."
                )
            if self._hosts.get(host, 0) >= per_host:
                raise PullBusy(
                    f"`{host}` is already pulling {self._hosts[host]} images, as many as it pulls at once. "
                    "Try again when one has finished."
                )
            if self._users.get(user, 0) >= per_user:
                raise PullBusy(
                    f"You already have {self._users[user]} pulls running, as many as one person may. "
                    "Try again when one has finished."
                )
            self._total += 1
            self._hosts[host] = self._hosts.get(host, 0) + 1
            self._users[user] = self._users.get(user, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._total -= 1
                self._hosts[host] -= 1
                self._users[user] -= 1

    def running(self) -> int:
        with self._lock:
            return self._total


class PullRegistry:
    """The pulls in flight in this process, by (host name, canonical reference)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[tuple[str, str], PullJob] = {}
        self.engine_pulls = 0  # engine pulls started, for tests and metrics

    def pull(
        self,
        host: DockerHost,
        ref: Reference,
        listener: Listener,
        *,
        auth: dict[str, str] | None,
        inactivity_timeout: float,
        deadline: float | None = None,
        on_join: Callable[[], None] | None = None,
    ) -> PullSnapshot:
        """Pull `ref` (tag or digest set) on `host`, or follow the same pull already running.

        Blocks until the pull ends; returns its final snapshot or raises PullError (or what the
        engine connection raised). `on_join` is called when this request follows another one.
        """
        key = (host.name, ref.canonical())
        with self._lock:
            job = self._jobs.get(key)
            owner = job is None
            if job is None:
                job = self._jobs[key] = PullJob(host, ref)
                self.engine_pulls += 1
        if not owner and on_join is not None:
            on_join()
        job.attach(listener)
        if owner:
            try:
                job.run(auth, inactivity_timeout, deadline)
            finally:
                # Out of the registry before waking the followers: a request from now on starts afresh.
                with self._lock:
                    self._jobs.pop(key, None)
                job.complete()
        return job.wait()

    def in_flight(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._jobs)

    def interrupt_all(self, reason: str) -> int:
        """Graceful shutdown: every running pull ends now, and its message says why."""
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.interrupt(reason)
        return len(jobs)
