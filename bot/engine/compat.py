"""Every use of docker-py's (and urllib3's) private parts, in one place.

docker-py has no public call for a GET with query parameters and a timeout of its own, for a
streamed POST whose read timeout differs from the connect timeout, or for its ssh adapter's
settings. What the bot relies on is here, and tests/test_compat.py checks that the pinned
versions still have it, so an upgrade fails there, not in production.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import docker
import requests

SshAdapterBase: type = docker.transport.SSHHTTPAdapter  # type: ignore[attr-defined]


def install_ssh_adapter(adapter: type) -> None:
    """docker-py builds its ssh adapter itself, by this name in docker.api.client, and has no
    other way in for timeouts or a shared pool."""
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
