"""/docker hosts: every configured engine, asked in parallel: version, image store, images, disk, latency."""

from __future__ import annotations

import time
from dataclasses import dataclass

from bot.commands import ArgParser, Command, Reply, Request
from bot.diskusage import images_usage
from bot.fleet import fan_out
from bot.formatting import format_table, human_size
from bot.hosts import DockerHost
from bot.messages import Message, code_blocks, context, header


def add_arguments(parser: ArgParser) -> None:
    pass


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
    api._result(api._get(api._url("/_ping"), timeout=5))
    latency = (time.monotonic() - started) * 1000
    info = api.info()
    usage = images_usage(api)
    return HostFacts(
        version=info.get("ServerVersion") or "?",
        store=image_store(info),
        images=int(info.get("Images") or len(usage.images)),
        size=usage.total,
        latency_ms=latency,
    )


def run(req: Request, reply: Reply) -> None:
    hosts = list(req.services.hosts)
    timeout = req.services.settings.host_timeout
    rows = []
    for result in fan_out(hosts, facts, timeout):
        name = result.host + (" (default)" if result.host == req.services.hosts.default.name else "")
        if result.ok and result.value is not None:
            f = result.value
            rows.append(
                [name, f.version, f.store, str(f.images), human_size(f.size), "up", f"{f.latency_ms:.0f}ms"]
            )
        else:
            why = f"no answer in {timeout:g}s" if result.timed_out else "down"
            rows.append([name, "-", "-", "-", "-", why, "-"])
    table = format_table(["HOST", "ENGINE", "IMAGE STORE", "IMAGES", "DISK", "STATUS", "LATENCY"], rows)
    up = sum(1 for r in rows if r[5] == "up")
    blocks = [header(f"{len(rows)} Docker hosts, {up} up"), *code_blocks(table)[:45]]
    blocks.append(context("`--host NAME` (or `@NAME` first) picks a host; `--host all` works for reads."))
    reply.send(Message(text=f"{len(rows)} hosts, {up} up", blocks=blocks))


COMMAND = Command(
    name="hosts",
    summary="The Docker hosts this bot manages: engine, image store, images, disk, reachability.",
    example="/docker hosts",
    run=run,
    add_arguments=add_arguments,
)
