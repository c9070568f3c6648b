"""The disk-usage report: `docker system df`, the largest images, the longest unused, and a chart.

The df table is the CLI's own (docker/cli `formatter/disk_usage.go`, every size `units.HumanSize`,
precision 4). Two engine shapes (moby daemon/server/router/system, API 1.52 changelog):

- API < 1.52 sends lists (`LayersSize`, `Images`, `Containers`, `Volumes`, `BuildCache`) and the CLI
  (v28 and older) computes the counts itself; `_legacy_*` below follow that code line by line.
- API >= 1.52 also (>= 1.53: only) sends `ImageUsage`, `ContainerUsage`, `VolumeUsage`,
  `BuildCacheUsage` with the daemon's own counts, which the v29 CLI prints as they are.
"""

from __future__ import annotations

import io
import logging
import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import docker
import requests

from bot.engine import dfcall
from bot.engine.hosts import EngineUnavailable, connection_cause, connection_errors
from bot.engine.images import NONE, Summary, images_in_use, list_images
from bot.engine.reference import familiar
from bot.render.formatting import (
    created_since,
    ellipsis,
    format_table,
    human_duration,
    human_size,
    human_size_4,
    short_id,
)
from bot.render.messages import Block, File, Message, code_blocks, context, header, section

if TYPE_CHECKING:
    from bot.core.services import Services
    from bot.engine.hosts import DockerHost

log = logging.getLogger("dockerbot.report")

TOP = 10  # images in each list
NAME_WIDTH = 48  # an image name wider than this is cut with "…" (the table must fit a Slack section)
DF_HEADERS = ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]


# --------------------------------------------------------------------------------------------- system df


@dataclass(frozen=True)
class DfRow:
    """One line of `docker system df`, as numbers; `cells()` prints it as the CLI does."""

    type: str  # Images, Containers, Local Volumes, Build Cache
    total: int
    active: int
    size: int
    reclaimable: int
    percent: bool = True  # the CLI prints no percentage for the build cache

    def cells(self) -> list[str]:
        reclaimable = human_size_4(self.reclaimable)
        if self.percent and self.size > 0:
            reclaimable += f" ({_go_div(self.reclaimable * 100, self.size)}%)"
        return [self.type, str(self.total), str(self.active), human_size_4(self.size), reclaimable]


def _go_div(a: int, b: int) -> int:
    """Go's integer division truncates toward zero (Python's // floors)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _int(value: Any, default: int = 0) -> int:
    return default if value is None else int(value)


def _legacy_images(df: dict[str, Any]) -> DfRow:
    images = df.get("Images") or []
    total_size = _int(df.get("LayersSize"))
    used = 0
    for image in images:
        size, shared = _int(image.get("Size"), -1), _int(image.get("SharedSize"), -1)
        if _int(image.get("Containers")) != 0 and size != -1 and shared != -1:
            used += size - shared
    active = sum(1 for i in images if _int(i.get("Containers")) > 0)
    return DfRow("Images", len(images), active, total_size, total_size - used)


def _container_active(container: dict[str, Any]) -> bool:
    state = container.get("State") or ""
    return any(word in state for word in ("running", "paused", "restarting"))


def _legacy_containers(df: dict[str, Any]) -> DfRow:
    containers = df.get("Containers") or []
    size = sum(_int(c.get("SizeRw")) for c in containers)
    reclaimable = sum(_int(c.get("SizeRw")) for c in containers if not _container_active(c))
    active = sum(1 for c in containers if _container_active(c))
    return DfRow("Containers", len(containers), active, size, reclaimable)


def _legacy_volumes(df: dict[str, Any]) -> DfRow:
    volumes = df.get("Volumes") or []
    usage = [v.get("UsageData") or {"Size": -1, "RefCount": 0} for v in volumes]
    active = sum(1 for u in usage if _int(u.get("RefCount")) > 0)
    sized = [u for u in usage if _int(u.get("Size"), -1) != -1]  # -1: the driver cannot tell
    size = sum(_int(u["Size"]) for u in sized)
    reclaimable = sum(_int(u["Size"]) for u in sized if _int(u.get("RefCount")) == 0)
    return DfRow("Local Volumes", len(volumes), active, size, reclaimable)


def _legacy_build_cache(df: dict[str, Any]) -> DfRow:
    records = df.get("BuildCache") or []
    size = sum(_int(r.get("Size")) for r in records if not r.get("Shared"))
    in_use = sum(_int(r.get("Size")) for r in records if r.get("InUse") and not r.get("Shared"))
    active = sum(1 for r in records if r.get("InUse"))
    return DfRow("Build Cache", len(records), active, size, size - in_use, percent=False)


def _usage(name: str, usage: dict[str, Any], percent: bool = True) -> DfRow:
    return DfRow(
        name,
        _int(usage.get("TotalCount")),
        _int(usage.get("ActiveCount")),
        _int(usage.get("TotalSize")),
        _int(usage.get("Reclaimable")),
        percent,
    )


def parse_df(df: dict[str, Any]) -> list[DfRow]:
    """The four rows from a /system/df answer of either shape (both, at API 1.52: the new one wins,
    as in the v29 CLI). A type the engine left out (no builder) is a row of zeros, as the CLI prints it."""
    rows = []
    for name, new_key, legacy_key, legacy, percent in (
        ("Images", "ImageUsage", "Images", _legacy_images, True),
        ("Containers", "ContainerUsage", "Containers", _legacy_containers, True),
        ("Local Volumes", "VolumeUsage", "Volumes", _legacy_volumes, True),
        ("Build Cache", "BuildCacheUsage", "BuildCache", _legacy_build_cache, False),
    ):
        if isinstance(df.get(new_key), dict):
            rows.append(_usage(name, df[new_key], percent))
        elif df.get(legacy_key) is not None or (legacy_key == "Images" and df.get("LayersSize")):
            rows.append(legacy(df))
        else:
            rows.append(DfRow(name, 0, 0, 0, 0, percent))
    return rows


def system_df(api: docker.APIClient) -> list[DfRow]:
    """`docker system df` on this engine: one GET /system/df, shared with other callers (dfcall)."""
    return parse_df(dfcall.system_df(api))


def df_table(rows: list[DfRow]) -> str:
    return format_table(DF_HEADERS, [row.cells() for row in rows])


# --------------------------------------------------------------------------------------------- images


@dataclass(frozen=True)
class ImageLine:
    name: str  # first tag in familiar form (+N more), or <none>:<none>
    id: str  # full ID
    size: int
    created: float | None
    last_used: float | None = None  # from the ledger; None: no record


def image_name(image: Summary) -> str:
    tags = [familiar(t) for t in image.get("RepoTags") or []]
    if tags:
        more = f" (+{len(tags) - 1})" if len(tags) > 1 else ""
        return ellipsis(tags[0], NAME_WIDTH - len(more)) + more
    digests = image.get("RepoDigests") or []
    if digests:  # pulled by digest only: the CLI shows `name <none>`
        return ellipsis(familiar(digests[0]).partition("@")[0], NAME_WIDTH - 7) + f":{NONE}"
    return f"{NONE}:{NONE}"


def _line(image: Summary, last_used: float | None = None) -> ImageLine:
    return ImageLine(image_name(image), image["Id"], _int(image.get("Size")), image.get("Created"), last_used)


def largest_images(images: list[Summary], limit: int = TOP) -> list[ImageLine]:
    """Largest first; equal sizes newest first (the order `docker images` already has)."""
    ranked = sorted(images, key=lambda i: -_int(i.get("Size")))  # stable: ties keep list order
    return [_line(i) for i in ranked[:limit]]


UsageSource = Literal["ledger", "created"]


def unused_images(
    images: list[Summary],
    in_use: dict[str, list[Any]],
    ledger: Any,
    host_name: str,
    limit: int = TOP,
) -> tuple[list[ImageLine], UsageSource]:
    """Images no container uses, longest unused first: by last use when the bot keeps a usage ledger
    (an image it never saw used counts from its Created time), otherwise by Created time alone."""
    unused = [i for i in images if not in_use.get(i["Id"])]
    source: UsageSource = "created"
    lines = [_line(i) for i in unused]
    if ledger is not None:
        try:
            uses = _last_uses(ledger, host_name, [i["Id"] for i in unused])
            lines = [_line(i, uses.get(i["Id"])) for i in unused]
            source = "ledger"
        except Exception:
            log.exception("the usage ledger failed; ordering unused images by creation time")
    lines.sort(key=lambda line: (line.last_used or line.created or 0, line.id))
    return lines[:limit], source


def _last_uses(ledger: Any, host_name: str, image_ids: list[str]) -> dict[str, float]:
    """Image ID -> when it was last used. bot.engine.ledger.Ledger answers for the whole host in one query;
    the times it seeded from Created (source "created") are not uses. Any other ledger: `last_used`."""
    bulk = getattr(ledger, "all_last_used", None)
    if callable(bulk):
        return {i: when for i, (when, source) in bulk(host_name).items() if source != "created"}
    return {i: when for i in image_ids if (when := ledger.last_used(host_name, i)) is not None}


def _largest_table(lines: list[ImageLine], now: float) -> str:
    rows = [[ln.name, short_id(ln.id), human_size(ln.size), created_since(ln.created, now)] for ln in lines]
    return format_table(["IMAGE", "IMAGE ID", "SIZE", "CREATED"], rows)


def _unused_table(lines: list[ImageLine], source: UsageSource, now: float) -> str:
    if source == "created":
        return _largest_table(lines, now)

    def last(line: ImageLine) -> str:
        if line.last_used is None:
            return f"never (created {created_since(line.created, now)})"
        return human_duration(now - line.last_used) + " ago"

    rows = [[ln.name, short_id(ln.id), human_size(ln.size), last(ln)] for ln in lines]
    return format_table(["IMAGE", "IMAGE ID", "SIZE", "LAST USED"], rows)


# --------------------------------------------------------------------------------------------- chart

_CHART_LOCK = threading.Lock()  # matplotlib's text and font caches are not thread-safe
USED_COLOR, RECLAIM_COLOR, IMAGE_COLOR = "#4c72b0", "#dd8452", "#55a868"


def render_chart(rows: list[DfRow], largest: list[ImageLine], *, title: str = "Docker disk usage") -> bytes:
    """A PNG: used vs reclaimable per type (as in the df table), and the largest images.

    matplotlib is imported here, not at start-up: it takes about a second to load. The Agg canvas
    is used directly (no pyplot), so no display and no global figure state are involved."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    sizes = FuncFormatter(lambda value, _pos: human_size(value))
    with _CHART_LOCK:
        fig = Figure(figsize=(10, 7.5), dpi=100, layout="constrained")
        FigureCanvasAgg(fig)
        fig.suptitle(title, fontsize=15, fontweight="bold")
        top, bottom = fig.subplots(2, 1, height_ratios=[1, 1.7])

        types = [r.type for r in reversed(rows)]
        used = [max(r.size - r.reclaimable, 0) for r in reversed(rows)]
        reclaim = [max(r.reclaimable, 0) for r in reversed(rows)]
        top.barh(types, used, color=USED_COLOR, label="in use")
        top.barh(types, reclaim, left=used, color=RECLAIM_COLOR, label="reclaimable")
        widest = max([u + r for u, r in zip(used, reclaim, strict=True)] + [1])
        for y, row in enumerate(reversed(rows)):
            top.text(
                max(row.size, 0) + widest * 0.01,
                y,
                f"{human_size_4(row.size)}  ({human_size_4(row.reclaimable)} reclaimable)",
                va="center",
                fontsize=9,
            )
        top.set_xlim(0, widest * 1.45)  # room for the labels
        top.set_title("Disk usage by type", loc="left", fontsize=11)
        top.xaxis.set_major_formatter(sizes)
        top.legend(loc="lower right", fontsize=9, frameon=False)

        if largest:
            names = [ln.name for ln in reversed(largest)]
            values = [ln.size for ln in reversed(largest)]
            bottom.barh(range(len(names)), values, color=IMAGE_COLOR)
            bottom.set_yticks(range(len(names)), names, fontsize=9)
            for y, value in enumerate(values):
                bottom.text(value, y, f" {human_size(value)}", va="center", fontsize=9)
            bottom.set_xlim(0, max([*values, 1]) * 1.2)
        else:
            bottom.text(0.5, 0.5, "No images", ha="center", va="center", transform=bottom.transAxes)
            bottom.set_yticks([])
        bottom.set_title(f"Largest images (top {len(largest)})", loc="left", fontsize=11)
        bottom.xaxis.set_major_formatter(sizes)
        for ax in (top, bottom):
            ax.spines[["top", "right"]].set_visible(False)

        out = io.BytesIO()
        fig.savefig(out, format="png")
    return out.getvalue()


# --------------------------------------------------------------------------------------------- message


def _file_name(host_name: str) -> str:
    return "disk-usage-" + (re.sub(r"[^A-Za-z0-9._-]+", "-", host_name).strip("-.") or "host") + ".png"


def build_report(
    services: Services, host: DockerHost, now: float | None = None, *, chart: bool = True
) -> Message:
    """The whole report for one host: three engine calls (system df, images, containers) and a chart
    (`chart=False`: none, for a fleet reply that shows no files; drawing takes about a second of CPU)."""
    now = time.time() if now is None else now
    api = host.api
    rows = system_df(api)
    images = list_images(api)
    in_use = images_in_use(api)
    largest = largest_images(images)
    unused, source = unused_images(images, in_use, services.ledger, host.name)
    stamp = datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")

    blocks: list[Block] = [
        header(f"Docker disk usage on {host.name}"),
        context(f"Host `{host.name}` · {stamp}"),
        section("*Disk usage* (as `docker system df`)"),
        *code_blocks(df_table(rows)),
    ]
    if largest:
        blocks += [
            section(f"*The {len(largest)} largest images*"),
            *code_blocks(_largest_table(largest, now)),
        ]
    else:
        blocks.append(section("*Images:* none on this host."))
    how = (
        "by last use, from the bot's usage record"
        if source == "ledger"
        else "by creation time: the bot keeps no record of when images were last used"
    )
    if unused:
        blocks += [section(f"*Unused for longest* ({how})"), *code_blocks(_unused_table(unused, source, now))]
    elif images:
        blocks.append(section("*Unused for longest:* every image is used by a container."))
    blocks.append(context("Unused = no container, running or stopped, was created from the image."))

    summary = "; ".join(
        f"{r.type} {human_size_4(r.size)} ({human_size_4(r.reclaimable)} reclaimable)" for r in rows
    )
    return Message(
        text=f"Docker disk usage on {host.name}: {summary}",
        blocks=blocks,
        in_channel=True,
        files=[
            File(
                _file_name(host.name),
                render_chart(rows, largest, title=f"Docker disk usage on {host.name} · {stamp}"),
                title=f"Docker disk usage on {host.name}, {stamp}",
            )
        ]
        if chart
        else [],
    )


def run_scheduled_report(
    services: Services, host: DockerHost, params: dict[str, Any], *, chart: bool = True
) -> Message:
    """The scheduler's runner: the report, or a message saying why there is none. Never raises.
    `chart=False` for one host of a fleet summary, which shows text only."""
    try:
        return build_report(services, host, chart=chart)
    except EngineUnavailable as error:
        problem = str(error)
    except connection_errors() as error:
        problem = str(EngineUnavailable(host, connection_cause(error)))
    except docker.errors.APIError as error:
        problem = f"Error response from daemon: {error.explanation or error}"
    except (docker.errors.DockerException, requests.exceptions.RequestException) as error:
        problem = f"the engine answered unexpectedly ({type(error).__name__})"
    except Exception:
        log.exception("the scheduled report for %s failed", host.name)
        problem = "something went wrong; the details are in the bot's log"
    text = f"No disk-usage report for host `{host.name}` this time. {problem}"
    return Message(text=text, blocks=[section(text)], in_channel=True)
