"""What ssh:// hosts need beyond docker-py: imported (with paramiko) only once such a host connects.

bot.engine.hosts imports this module when it connects to an ssh:// host; a process without one
never loads paramiko, cryptography, PyNaCl or bcrypt (see bot.engine.compat.defer_ssh_transport).
"""

from __future__ import annotations

from typing import Any

import docker
import paramiko

from bot.engine.compat import install_ssh_adapter, ssh_adapter_base, wait_for_free_connection

# Connections (ssh sessions) to one ssh:// host at once: below sshd's default MaxSessions of 10.
SSH_SESSIONS = 8
SSH_HANDSHAKE_TIMEOUT = 10.0  # seconds for each of TCP connect, the server's banner, authentication
SSH_KEEPALIVE = 30  # seconds: an idle link (the ledger's event stream) is not dropped by a firewall

# paramiko's errors when a host cannot be reached: a session that dropped, a channel the server would
# not open, and the EOFError its transport raises (from connect, or from opening a channel) when the
# server hung up mid-handshake or the connection dropped.
ERRORS: tuple[type[BaseException], ...] = (paramiko.SSHException, EOFError)


class _SshAdapter(ssh_adapter_base()):  # type: ignore[misc]
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


def cause(error: BaseException) -> str | None:
    """A short cause for one of paramiko's errors that its message does not make plain."""
    if isinstance(error, paramiko.BadHostKeyException):
        return "its ssh host key does not match the bot's known_hosts"
    if isinstance(error, paramiko.AuthenticationException) or "No authentication methods available" in str(
        error
    ):
        return "ssh authentication failed (is the bot's key in the host's authorized_keys?)"
    if isinstance(error, paramiko.ChannelException):
        # docker-py opens a session per HTTP connection and keeps idle ones; sshd limits them.
        return "its ssh server refused another session (MaxSessions in its sshd_config, 10 by default)"
    if isinstance(error, EOFError):
        return "the ssh connection dropped"
    return None


def dropped(client: docker.DockerClient) -> bool:
    """Whether the client's ssh connection is gone: docker-py never reopens one, its pools keep the
    dead transport."""
    ssh = getattr(getattr(client.api, "_custom_adapter", None), "ssh_client", None)
    if not isinstance(ssh, paramiko.SSHClient):
        return False
    transport = ssh.get_transport()
    return transport is None or not transport.is_active()
