"""GET /system/df, one at a time per host, with a short cache for views.

Engines before API 1.42 (Engine 20.10 here, whatever the store) run one disk-usage calculation at a
time and answer any other with 500 "a disk usage operation is already running"; Engine 23 and later
make a second caller wait for the running one (moby docs/api/version-history.md, v1.42), as the
containerd-store engine of the tests does. Viewers, App Home, rmi and schedules all ask the same host,
so every df call of this process goes through here: callers of one host queue behind one lock, and a
caller reuses an answer whose call started after the caller arrived (single flight: a burst of callers
costs two calls, and nobody gets an answer older than their question) or, for views that ask with
`max_age`, one started at most that long before. A refusal caused by someone else (the CLI, another
replica) is retried briefly.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import docker

from bot.engine.compat import engine_address, get_json

BUSY = "disk usage operation is already running"
MAX_AGE = 2.0  # for views (hosts, App Home): seconds an older answer may be shown
_RETRIES = (0.1, 0.3, 0.6, 1.0, 2.0)

_lock = threading.Lock()
_hosts: dict[str, _HostDf] = {}


class _HostDf:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cache: dict[tuple[tuple[str, str], ...], tuple[float, dict[str, Any]]] = {}


def _host(api: docker.APIClient) -> _HostDf:
    key = engine_address(api)
    with _lock:
        if key not in _hosts:
            _hosts[key] = _HostDf()
        return _hosts[key]


def system_df(api: docker.APIClient, params: dict[str, str] | None = None, max_age: float = 0.0) -> Any:
    """The engine's /system/df answer for `params`, from a call that started after this one was made
    (or at most `max_age` seconds before)."""
    key = tuple(sorted((params or {}).items()))
    host = _host(api)
    arrived = time.monotonic()
    with host.lock:
        cached = host.cache.get(key)
        if cached is not None and cached[0] >= arrived - max_age:
            return cached[1]
        started = time.monotonic()
        for delay in (*_RETRIES, None):
            try:
                answer = get_json(api, "/system/df", params=params or None)
                break
            except docker.errors.APIError as error:
                if delay is None or BUSY not in str(error.explanation or error):
                    raise
                time.sleep(delay)
        host.cache[key] = (started, answer)
        return answer


def forget(api: docker.APIClient) -> None:
    """Drop this host's cached answers (after something was removed)."""
    _host(api).cache.clear()
