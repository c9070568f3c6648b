"""GET /system/df, one at a time per host, with a short cache.

The containerd image store runs one disk-usage operation at a time and answers any other with 500
"a disk usage operation is already running" (moby daemon/containerd/image_prune.go and
daemon/disk_usage.go use a singleflight that refuses instead of waiting). Viewers, App Home, rmi and
schedules all ask the same host, so every df call of this process goes through here: callers of one
host queue behind one lock, a caller that finds an answer younger than `max_age` reuses it, and a
refusal caused by someone else (the CLI, another replica) is retried briefly.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import docker

from bot.engine.compat import engine_address, get_json

BUSY = "disk usage operation is already running"
MAX_AGE = 2.0  # seconds an answer is shared: long enough for a burst, short enough to look live
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


def system_df(api: docker.APIClient, params: dict[str, str] | None = None, max_age: float = MAX_AGE) -> Any:
    """The engine's /system/df answer for `params`. `max_age=0` always asks the engine (after a removal)."""
    key = tuple(sorted((params or {}).items()))
    host = _host(api)
    with host.lock:
        cached = host.cache.get(key)
        if cached is not None and time.monotonic() - cached[0] <= max_age:
            return cached[1]
        for delay in (*_RETRIES, None):
            try:
                answer = get_json(api, "/system/df", params=params or None)
                break
            except docker.errors.APIError as error:
                if delay is None or BUSY not in str(error.explanation or error):
                    raise
                time.sleep(delay)
        host.cache[key] = (time.monotonic(), answer)
        return answer


def forget(api: docker.APIClient) -> None:
    """Drop this host's cached answers (after something was removed)."""
    _host(api).cache.clear()
