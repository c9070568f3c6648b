"""Docker host access: one long-lived client per host, created on first use.

A client is only cached once it has reached its engine, so an engine that was
down at start-up (or is down now) is retried on the next command.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType

import docker
import requests
import urllib3

from bot.engine import compat
from bot.engine.compat import negotiate_version
from bot.errors import UserError


class EngineUnavailable(UserError):
    def __init__(self, host: DockerHost, cause: str) -> None:
        self.host = host
        self.cause = cause
        super().__init__(f"Cannot reach the Docker engine on host `{host.name}` ({host.address}): {cause}")


# Errors raised by requests/urllib3/docker when the engine cannot be reached at all.
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    ConnectionError,
    urllib3.exceptions.EmptyPoolError,  # every connection to an ssh:// host stayed busy (SSH_SESSIONS)
)
_SSH_NO_HANDSHAKE = "the ssh handshake did not complete (its server did not answer in time, or hung up)"
_SSH_MODULE = "bot.engine.sshhost"


def _ssh() -> ModuleType | None:
    """bot.engine.sshhost if this process has connected to an ssh:// host, else None: it imports
    paramiko, so before that no error of paramiko's can have been raised."""
    return sys.modules.get(_SSH_MODULE)


def connection_errors() -> tuple[type[BaseException], ...]:
    """The errors that mean an engine cannot be reached (for `except` and isinstance): requests',
    urllib3's and docker's, and paramiko's for ssh:// hosts once one is used (also from a streamed
    read, e.g. a pull's progress)."""
    ssh = _ssh()
    return _CONNECTION_ERRORS + ssh.ERRORS if ssh is not None else _CONNECTION_ERRORS


def connection_cause(error: BaseException) -> str:
    """A short, human cause for a connection failure (no URLs with credentials, no tracebacks)."""
    ssh = _ssh()
    found = ssh.cause(error) if ssh is not None else None
    if found:
        return str(found)
    if isinstance(error, urllib3.exceptions.EmptyPoolError):
        return (
            f"all {SSH_SESSIONS} of the bot's ssh sessions to it stayed busy (long pulls?); try again later"
        )
    text = str(error)
    for marker, cause in (
        ("No such file or directory", "the engine's socket does not exist (is dockerd running?)"),
        ("Connection refused", "connection refused (is dockerd running?)"),
        ("Permission denied", "permission denied on the engine's socket"),
        ("timed out", "the engine did not answer in time"),
        ("Name or service not known", "unknown host name"),
        ("Unable to connect to port", "cannot connect to its ssh server (is sshd running?)"),
        ("Error reading SSH protocol banner", _SSH_NO_HANDSHAKE),
        ("No existing session", _SSH_NO_HANDSHAKE),  # paramiko, when the handshake died first
        ("not found in known_hosts", "its ssh host key is not in the bot's known_hosts"),
        ("SSH session not active", "the ssh connection dropped"),
        ("Socket is closed", "the ssh connection dropped"),
        (
            "Remote end closed connection without response",
            "the engine closed the connection without an answer"
            " (ssh:// hosts: does `docker system dial-stdio` work there?)",
        ),
    ):
        if marker in text:
            return cause
    return type(error).__name__


CLOSE_WAIT = 0.1  # seconds `close` waits for a connect in progress (the lock is otherwise held briefly)
_PROVISIONAL_VERSION = "1.41"  # replaced by the engine's own before any real call
# Connections (ssh sessions) to one ssh:// host at once: below sshd's default MaxSessions of 10.
SSH_SESSIONS = 8


@dataclass(frozen=True)
class TlsPaths:
    ca: str | None
    cert: str
    key: str


@dataclass
class DockerHost:
    name: str
    url: str | None = None  # None: the docker SDK's environment (DOCKER_HOST, DOCKER_TLS_VERIFY, ...)
    timeout: float = 60.0
    max_pool_size: int = 32  # as many as the worker pool, so workers do not queue for connections
    tls: TlsPaths | None = None  # client certificates for tcp:// engines
    _client: docker.DockerClient | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def address(self) -> str:
        return self.url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"

    def client(self) -> docker.DockerClient:
        with self._lock:
            if self._client is not None and self._ssh_dropped(self._client):
                # docker-py never reopens a dropped ssh connection: its pools keep the dead transport.
                self._client.close()
                self._client = None
            if self._client is None:
                self._client = self._connect()
            return self._client

    @property
    def api(self) -> docker.APIClient:
        return self.client().api

    @property
    def is_ssh(self) -> bool:
        return self.address.startswith("ssh://")

    def _ssh_dropped(self, client: docker.DockerClient) -> bool:
        ssh = _ssh() if self.is_ssh else None
        return ssh is not None and bool(ssh.dropped(client))

    def _connect(self) -> docker.DockerClient:
        ssh = self.is_ssh
        if ssh:
            import bot.engine.sshhost  # noqa: F401 - installs the bot's ssh adapter; imports paramiko
        # Negotiate the API version only once the transport is set up as it will be used.
        version = _PROVISIONAL_VERSION if self.tls or ssh else None
        pool_size = min(self.max_pool_size, SSH_SESSIONS) if ssh else self.max_pool_size
        try:
            if self.url is None:
                # use_context=False: a bot must not follow whatever `docker context use` said last.
                client = docker.from_env(
                    timeout=int(self.timeout), use_context=False, max_pool_size=pool_size, version=version
                )
            else:
                tls = None
                if self.tls:
                    pair, ca = (self.tls.cert, self.tls.key), self.tls.ca
                    tls = docker.tls.TLSConfig(client_cert=pair, ca_cert=ca, verify=bool(ca))
                client = docker.DockerClient(
                    base_url=self.url,
                    timeout=int(self.timeout),
                    max_pool_size=pool_size,
                    tls=tls or False,
                    version=version,
                )
            if self.tls:
                # Else REQUESTS_CA_BUNDLE in the environment replaces the host's CA (psf/requests#3829).
                client.api.trust_env = False
            if version is not None:
                negotiate_version(client.api)
            return client
        except (docker.errors.DockerException, OSError, *connection_errors()) as error:  # OSError: ssh://
            cause = error.__cause__ or error
            # paramiko raises its transport's EOFError when the server hung up before the session was up
            reason = _SSH_NO_HANDSHAKE if isinstance(cause, EOFError) else connection_cause(cause)
            raise EngineUnavailable(self, reason) from error

    def ping(self, timeout: float = 2.0) -> bool:
        """Whether the engine answers now (readiness); never raises."""
        try:
            api = self.api
            response = compat.get(api, "/_ping", timeout=timeout)
            return response.status_code == 200
        except Exception:  # noqa: BLE001 - any failure means "not reachable"
            return False

    def close(self) -> None:
        # A connect in progress holds the lock for as long as the engine does not answer (up to the
        # client's timeout): closing, e.g. at shutdown, does not wait for a host that is not there.
        if not self._lock.acquire(timeout=CLOSE_WAIT):
            return
        try:
            if self._client is not None:
                self._client.close()
                self._client = None
        finally:
            self._lock.release()


class HostPool:
    """The configured hosts by name; the first one is the default."""

    def __init__(self, hosts: list[DockerHost]) -> None:
        if not hosts:
            raise ValueError("at least one Docker host is needed")
        self._hosts = {h.name: h for h in hosts}
        self.default = hosts[0]

    def get(self, name: str | None) -> DockerHost:
        if name is None:
            return self.default
        try:
            return self._hosts[name]
        except KeyError:
            known = ", ".join(f"`{n}`" for n in self._hosts)
            raise UserError(f"Unknown host `{name}`. Known hosts: {known}.") from None

    def __iter__(self) -> Iterator[DockerHost]:
        return iter(self._hosts.values())

    def __len__(self) -> int:
        return len(self._hosts)

    @property
    def names(self) -> list[str]:
        return list(self._hosts)

    def select(self, spec: str | None) -> list[DockerHost]:
        """`None`: the default host; `all`; or a comma-separated list of names."""
        if spec is None:
            return [self.default]
        if spec == "all":
            return list(self._hosts.values())
        names = [name.strip() for name in spec.split(",") if name.strip()]
        if not names:
            known = ", ".join(f"`{n}`" for n in self._hosts)
            raise UserError(f"`--host` needs a host name, or `all`. Known hosts: {known}.")
        return [self.get(name) for name in dict.fromkeys(names)]

    def close(self) -> None:
        for host in self._hosts.values():
            host.close()
