"""Every use of docker-py's (and urllib3's) private parts, in one place.

docker-py has no public call for a GET with query parameters and a timeout of its own, for a
streamed POST whose read timeout differs from the connect timeout, for its ssh adapter's
settings, or for leaving its ssh transport (and paramiko) unimported until an ssh:// host needs
it. What the bot relies on is here, and tests/test_compat.py checks that the pinned versions
still have it, so an upgrade fails there, not in production.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # docker is imported by whoever makes a client, after `defer_ssh_transport`
    import docker
    import requests

# docker-py's ssh transport: importing it imports paramiko, cryptography, PyNaCl and bcrypt (measured:
# 16-19 MB of RSS in each of the bot's processes), and `import docker` imports it.
SSH_TRANSPORT = "docker.transport.sshconn"


def defer_ssh_transport() -> None:
    """Keep `import docker` from importing its ssh transport, until an ssh:// host needs it.

    docker-py treats that transport as optional (paramiko is its `ssh` extra): docker.transport and
    docker.api.client each import it in a `try: ... except ImportError: pass`. A None entry in
    sys.modules is the import system's documented way to make an import raise ModuleNotFoundError,
    so until `ssh_adapter_base` lifts it, docker-py runs as if paramiko were not installed. Run
    before anything imports docker: bot/__init__.py does. A transport already imported is kept."""
    sys.modules.setdefault(SSH_TRANSPORT, None)


def ssh_adapter_base() -> type:
    """docker-py's ssh adapter class, importing its transport (and paramiko) now: only for a
    process that has an ssh:// host."""
    if SSH_TRANSPORT in sys.modules and sys.modules[SSH_TRANSPORT] is None:
        del sys.modules[SSH_TRANSPORT]
    from docker.transport.sshconn import SSHHTTPAdapter

    return SSHHTTPAdapter  # type: ignore[no-any-return]


def install_ssh_adapter(adapter: type) -> None:
    """docker-py builds its ssh adapter itself, by this name in docker.api.client (bound there
    only if its transport was imported), and has no other way in for timeouts or a shared pool."""
    import docker.api.client

    docker.api.client.SSHHTTPAdapter = adapter  # type: ignore[attr-defined]


def wait_for_free_connection(pool: Any, wait: float) -> None:
    """Make a urllib3 pool block (up to `wait` seconds) for a free connection instead of opening
    one more: urllib3's HTTPConnectionPool._get_conn(timeout=) is where a blocking pool waits,
    and urllib3 calls it with timeout=None unless told otherwise."""
    if not pool.block:
        pool.block = True
        take = pool._get_conn
        pool._get_conn = lambda timeout=None: take(wait if timeout is None else timeout)


def get(
    api: docker.APIClient, path: str, *, params: dict[str, Any] | None = None, timeout: float | None = None
) -> requests.Response:
    """A raw GET of an Engine API path (versioned like every docker-py call)."""
    kwargs: dict[str, Any] = {"params": params} if params else {}
    if timeout is not None:
        kwargs["timeout"] = timeout
    return api._get(api._url(path), **kwargs)


def get_json(
    api: docker.APIClient, path: str, *, params: dict[str, Any] | None = None, timeout: float | None = None
) -> Any:
    """GET an Engine API path and decode its JSON; an engine error raises docker.errors.APIError."""
    return api._result(get(api, path, params=params, timeout=timeout), True)


def engine_address(api: docker.APIClient) -> str:
    """One string per engine a client talks to: unix and ssh clients all have base_url
    http+docker://localhost, so their adapter's socket path or ssh host tells them apart."""
    adapter = getattr(api, "_custom_adapter", None)
    where = getattr(adapter, "socket_path", None) or getattr(adapter, "ssh_host", None) or ""
    return f"{api.base_url} {where}"


def check(api: docker.APIClient, response: requests.Response) -> None:
    """Raise docker.errors.APIError (NotFound, …) for an error answer, as docker-py's calls do."""
    api._result(response)


def post_stream(
    api: docker.APIClient,
    path: str,
    *,
    params: dict[str, Any],
    headers: dict[str, str],
    read_timeout: float,
) -> tuple[requests.Response, Iterator[dict[str, Any]]]:
    """A streamed POST (a pull's JSON progress) whose read timeout is `read_timeout` while the
    connect timeout stays the client's: docker-py's pull() takes one timeout for both."""
    response = api._post(
        api._url(path), params=params, headers=headers, stream=True, timeout=(api.timeout, read_timeout)
    )
    try:
        api._raise_for_status(response)
    except BaseException:
        response.close()
        raise
    return response, api._stream_helper(response, decode=True)


def negotiate_version(api: docker.APIClient) -> None:
    """Ask the engine for its API version and use it (what version="auto" does at connect):
    the client is made with a provisional version so connecting never blocks on the engine."""
    api._version = api._retrieve_server_version()
