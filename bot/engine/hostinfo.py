"""What a host is: engine version, image store, image count and size, latency."""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass

from bot.engine.compat import check, get
from bot.engine.dfcall import MAX_AGE
from bot.engine.diskusage import images_usage
from bot.engine.fleet import fan_out
from bot.engine.hosts import DockerHost, HostPool
from bot.engine.images import list_images
from bot.render.formatting import format_table, human_size


@dataclass(frozen=True)
class HostFacts:
    version: str
    store: str
    images: int
    size: int
    latency_ms: float


def image_store(info: dict) -> str:
    """Engine 29's containerd image store reports a snapshotter as its driver type."""
    status = dict((k, v) for k, v in (info.get("DriverStatus") or []) if isinstance(k, str))
    driver = info.get("Driver") or "?"
    if "containerd.snapshotter" in status.get("driver-type", ""):
        return f"containerd ({driver})"
    return driver


def facts(host: DockerHost) -> HostFacts:
    api = host.api
    started = time.monotonic()
    check(api, get(api, "/_ping", timeout=5))
    latency = (time.monotonic() - started) * 1000
    info = api.info()
    usage = images_usage(api, max_age=MAX_AGE)  # a view: a burst of viewers shares one answer
    # Distinct top-level images, as `docker images` and `docker system df` count them: info's Images
    # counts image records on the containerd store (one per tag).
    images = len({i["Id"] for i in list_images(api)})
    return HostFacts(
        version=info.get("ServerVersion") or "?",
        store=image_store(info),
        images=images,
        size=usage.total,
        latency_ms=latency,
    )


def hosts_table(hosts: HostPool, timeout: float, only: Collection[str] | None = None) -> tuple[str, int, int]:
    """Every host (or those named in `only`) asked in parallel: (table, hosts up, hosts in all)."""
    rows = []
    up = 0
    for result in fan_out([h for h in hosts if only is None or h.name in only], facts, timeout):
        name = result.host + (" (default)" if result.host == hosts.default.name else "")
        if result.ok and result.value is not None:
            f = result.value
            up += 1
            rows.append(
                [name, f.version, f.store, str(f.images), human_size(f.size), "up", f"{f.latency_ms:.0f}ms"]
            )
        else:
            why = f"no answer in {timeout:g}s" if result.timed_out else "down"
            rows.append([name, "-", "-", "-", "-", why, "-"])
    table = format_table(["HOST", "ENGINE", "IMAGE STORE", "IMAGES", "DISK", "STATUS", "LATENCY"], rows)
    return table, up, len(rows)
