"""Docker host access: one long-lived client per host, created on first use.

A client is only cached once it has reached its engine, so an engine that was
down at start-up (or is down now) is retried on the next command.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import docker
import paramiko
import requests
import urllib3

from bot.engine import compat
from bot.engine.compat import SshAdapterBase, install_ssh_adapter, negotiate_version, wait_for_free_connection
from bot.errors import UserError


class EngineUnavailable(UserError):
    def __init__(self, host: DockerHost, cause: str) -> None:
        self.host = host
        self.cause = cause
        super().__init__(f"Cannot reach the Docker engine on host `{host.name}` ({host.address}): {cause}")


# Errors raised by requests/urllib3/docker when the engine cannot be reached at all; paramiko's for ssh://
# hosts (a session that dropped, or a channel the server would not open).
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    ConnectionError,
    paramiko.SSHException,
    urllib3.exceptions.EmptyPoolError,  # every connection to an ssh:// host stayed busy (SSH_SESSIONS)
)
_SSH_NO_HANDSHAKE = "the ssh handshake did not complete (its server did not answer in time, or hung up)"
_SSH_KEY_REFUSED = "ssh authentication failed (is the bot's key in the host's authorized_keys?)"


def connection_cause(error: BaseException) -> str:
    """A short, human cause for a connection failure (no URLs with credentials, no tracebacks)."""
    if isinstance(error, paramiko.BadHostKeyException):
        return "its ssh host key does not match the bot's known_hosts"
    if isinstance(error, paramiko.AuthenticationException):
        return _SSH_KEY_REFUSED
    if isinstance(error, urllib3.exceptions.EmptyPoolError):
        return (
            f"all {SSH_SESSIONS} of the bot's ssh sessions to it stayed busy (long pulls?); try again later"
        )
    if isinstance(error, paramiko.ChannelException):
        # docker-py opens a session per HTTP connection and keeps idle ones; sshd limits them.
        return "its ssh server refused another session (MaxSessions in its sshd_config, 10 by default)"
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
        ("No authentication methods available", _SSH_KEY_REFUSED),
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


_PROVISIONAL_VERSION = "1.41"  # replaced by the engine's own before any real call
# Connections (ssh sessions) to one ssh:// host at once: below sshd's default MaxSessions of 10.
SSH_SESSIONS = 8
SSH_HANDSHAKE_TIMEOUT = 10.0  # seconds for each of TCP connect, the server's banner, authentication
SSH_KEEPALIVE = 30  # seconds: an idle link (the ledger's event stream) is not dropped by a firewall


class _SshAdapter(SshAdapterBase):  # type: ignore[misc,valid-type]
    """docker-py's ssh adapter with what it leaves out for a served bot.

    Timeouts: without them, a host that drops packets holds a command (and the host's lock) for
    the kernel's TCP timeout, about two minutes, and a server that accepts but never speaks holds
    it until paramiko's own defaults run out.

    One pool of at most SSH_SESSIONS connections per host, which a request waits for up to the
    host's timeout: docker-py keeps a pool per request URL and opens a connection (an ssh session)
    whenever its pool has none free. Over one login, sshd refuses sessions past MaxSessions, and a
    dozen opened at once fail (measured: 10 of 12 concurrent calls)."""

    def __init__(self, base_url: str, timeout: float = 60, *args: Any, **kwargs: Any) -> None:
        self.handshake_timeout = min(SSH_HANDSHAKE_TIMEOUT, timeout)  # read by the calls below
        super().__init__(base_url, timeout, *args, **kwargs)

    def _create_paramiko_client(self, base_url: str) -> None:
        super()._create_paramiko_client(base_url)
        wait = self.handshake_timeout
        self.ssh_params.update(timeout=wait, banner_timeout=wait, auth_timeout=wait)

    def _connect(self) -> None:
        super()._connect()
        ssh = self.ssh_client  # named apart: test_deploy takes any `client.<name>(` for a Slack call
        transport = ssh.get_transport() if ssh else None
        if transport is not None:
            transport.set_keepalive(SSH_KEEPALIVE)

    def get_connection(self, url: str, proxies: Any = None) -> Any:
        pool = super().get_connection("http+docker://ssh", proxies)  # one key: one pool for every URL
        wait_for_free_connection(pool, self.timeout)
        return pool


install_ssh_adapter(_SshAdapter)


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
            if self._client is not None and _ssh_dropped(self._client):
                # docker-py never reopens a dropped ssh connection: its pools keep the dead transport.
                self._client.close()
                self._client = None
            if self._client is None:
                self._client = self._connect()
            return self._client

    @property
    def api(self) -> docker.APIClient:
        return self.client().api

    def _connect(self) -> docker.DockerClient:
        ssh = self.address.startswith("ssh://")
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
        except (docker.errors.DockerException, paramiko.SSHException, OSError) as error:  # OSError: ssh://
            raise EngineUnavailable(self, connection_cause(error.__cause__ or error)) from error

    def ping(self, timeout: float = 2.0) -> bool:
        """Whether the engine answers now (readiness); never raises."""
        try:
            api = self.api
            response = compat.get(api, "/_ping", timeout=timeout)
            return response.status_code == 200
        except Exception:  # noqa: BLE001 - any failure means "not reachable"
            return False

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def _ssh_dropped(client: docker.DockerClient) -> bool:
    ssh = getattr(getattr(client.api, "_custom_adapter", None), "ssh_client", None)
    if not isinstance(ssh, paramiko.SSHClient):
        return False
    transport = ssh.get_transport()
    return transport is None or not transport.is_active()


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
