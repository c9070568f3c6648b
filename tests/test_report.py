"""/docker report: `docker system df` checked against the CLI, largest and longest-unused images,
the chart, Slack delivery, and schedules — on the real engine."""

from __future__ import annotations

import io
import re
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from bot.core.router import Router
from bot.core.services import Services
from bot.core.settings import Settings
from bot.engine.hosts import DockerHost
from bot.engine.images import list_images
from bot.engine.ledger import Ledger
from bot.jobs.report import (
    IMAGE_COLOR,
    RECLAIM_COLOR,
    USED_COLOR,
    DfRow,
    ImageLine,
    build_report,
    df_table,
    image_name,
    parse_df,
    render_chart,
    run_scheduled_report,
    system_df,
)
from bot.jobs.scheduler import Scheduler
from bot.render.messages import MAX_SECTION_TEXT, Message
from bot.sandbox import Engine
from bot.slack.client import make_web_client
from bot.slack.limits import MAX_MESSAGE_BLOCKS
from bot.slack.reply import SlackPoster
from tests.chat import ChatBot
from tests.conftest import SlackHttpBot
from tests.fakes.slack import FakeSlack

# Every test here compares the bot with the docker CLI: once on each engine (tests/conftest.py).
pytestmark = pytest.mark.both_engines

ROOT = Path(__file__).resolve().parent.parent
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SEEDS = [
    "ubuntu:latest",
    "ubuntu:22.04",
    "redis:6",
    "redis:7",
    "alpine:latest",
    "nginx:latest",
    "postgres:16",
    "busybox:latest",
    "openresty/openresty:1.13.6.2-alpine",
]
PREFIX = "report-test-"


# --------------------------------------------------------------------------------------------- helpers


class FakeLedger:
    """Stands in for bot.engine.ledger.Ledger: only `last_used(host_name, image_id)` is used."""

    def __init__(self, seen: dict[str, float]) -> None:
        self.seen = seen
        self.asked: list[tuple[str, str]] = []

    def last_used(self, host_name: str, image_id: str) -> float | None:
        self.asked.append((host_name, image_id))
        return self.seen.get(image_id)


class Inbox:
    """A Delivery for the scheduler: keeps what it would have posted."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Message]] = []

    def deliver(self, channel: str, message: Message) -> None:
        self.sent.append((channel, message))


def png_info(data: bytes) -> tuple[int, int, dict[bytes, bytes]]:
    """(width, height, tEXt entries) of a PNG, read chunk by chunk."""
    assert data[:8] == PNG_SIGNATURE
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunks.setdefault(data[pos + 4 : pos + 8], []).append(data[pos + 8 : pos + 8 + length])
        pos += 12 + length
    assert b"IEND" in chunks
    width, height = struct.unpack(">II", chunks[b"IHDR"][0][:8])
    texts = dict(body.split(b"\0", 1) for body in chunks.get(b"tEXt", []))
    return width, height, texts


def pixels_of(data: bytes, color: str) -> int:
    from PIL import Image  # installed with matplotlib

    rgb = tuple(int(color[i : i + 2], 16) for i in (1, 3, 5))
    image = Image.open(io.BytesIO(data)).convert("RGB")
    return sum(n for n, c in image.getcolors(maxcolors=1 << 20) or [] if c == rgb)


def cli_df(engine: Engine) -> list[list[str]]:
    out = engine.cli(
        "system", "df", "--format", "{{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}"
    ).stdout
    return [line.split("\t") for line in out.splitlines()]


def inspect(engine: Engine, fmt: str, *refs: str) -> list[str]:
    return engine.cli("inspect", "--format", fmt, *refs).stdout.splitlines()


def created_unix(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def sections(message: Message) -> list[str]:
    return [b["text"]["text"] for b in message.blocks if b["type"] == "section"]


def check_block_kit(blocks: list[dict[str, Any]]) -> None:
    assert 0 < len(blocks) <= MAX_MESSAGE_BLOCKS
    for block in blocks:
        if block["type"] in ("section", "header"):
            assert len(block["text"]["text"]) <= (MAX_SECTION_TEXT if block["type"] == "section" else 150)


def _cleanup(engine: Engine) -> None:
    names = engine.cli("ps", "-aq", "--filter", f"name={PREFIX}").stdout.split()
    if names:
        engine.cli("rm", "-f", *names)
    volumes = [v for v in engine.cli("volume", "ls", "-q").stdout.split() if v.startswith(PREFIX)]
    if volumes:
        engine.cli("volume", "rm", "-f", *volumes)


@pytest.fixture(scope="module")
def seeded(engine: Engine) -> Iterator[Engine]:
    """11 images (two committed with data), one running and one created container, an exited container
    with a written layer, a volume it used (with data) and an unused empty volume.

    Built once for the module (the report only reads); a test that changes the engine must come
    before the first test that uses it, or after the last (the engine-down test is last)."""
    _cleanup(engine)
    images = engine.cli("images", "-aq").stdout.split()
    if images:
        engine.cli("rmi", "-f", *dict.fromkeys(images), check=False)
    for ref in SEEDS:
        engine.cli("pull", "-q", ref)
    engine.cli("run", "-d", "--name", PREFIX + "running", "alpine")
    engine.cli("create", "--name", PREFIX + "stopped", "busybox")
    for n, kib in ((1, 1500), (2, 900)):
        name = f"{PREFIX}writer{n}"
        script = (
            f"dd if=/dev/urandom of=/big bs=1k count={kib} 2>/dev/null; "
            f"dd if=/dev/urandom of=/data/x bs=1k count={kib // 2} 2>/dev/null"
        )
        engine.cli(
            "run",
            "--name",
            name,
            "-v",
            f"{PREFIX}data{n}:/data",
            "redis:6",
            "/bin/busybox",
            "sh",
            "-c",
            script,
        )
        engine.cli("commit", name, f"{PREFIX}bigger:{n}")
    engine.cli("rm", PREFIX + "writer2")  # its volume stays, unreferenced: reclaimable
    engine.cli("volume", "create", PREFIX + "empty")
    yield engine
    _cleanup(engine)


# ------------------------------------------------------------------------- system df: the CLI is the oracle


def test_system_df_on_an_empty_engine_matches_the_cli(clean_engine: Engine, services: Services) -> None:
    _cleanup(clean_engine)
    rows = system_df(services.hosts.default.api)
    assert [row.cells() for row in rows] == cli_df(clean_engine)
    assert rows[0].cells()[3:] == ["0B", "0B"], "no percentage when there is nothing"


def test_system_df_matches_the_cli_row_by_row(seeded: Engine, services: Services) -> None:
    rows = system_df(services.hosts.default.api)
    assert [row.cells() for row in rows] == cli_df(seeded)
    images, containers, volumes, _ = rows
    assert (images.total, images.active) == (11, 3)  # alpine, busybox, redis:6 have containers
    assert (containers.total, containers.active) == (3, 1) and containers.reclaimable > 1_000_000
    assert (volumes.total, volumes.active) == (3, 1) and 0 < volumes.reclaimable < volumes.size
    # The whole table as the CLI prints it (the CLI pads the last column; we strip trailing blanks).
    cli_table = [line.rstrip() for line in seeded.cli("system", "df").stdout.splitlines()]
    assert df_table(rows).splitlines() == cli_table


def test_legacy_shape_follows_the_cli_formulas() -> None:
    """Build cache, Size -1 and odd states cannot be made on the test engine: a recorded-shape answer."""
    df = {
        "LayersSize": 1000,
        "Images": [
            {"Id": "a", "Size": 600, "SharedSize": 100, "Containers": 2},  # used: 500 unique bytes
            {"Id": "b", "Size": 400, "SharedSize": -1, "Containers": 1},  # used, sizes unknown: skipped
            {"Id": "c", "Size": 300, "SharedSize": 100, "Containers": 0},
        ],
        "Containers": [
            {"State": "running", "SizeRw": 10},
            {"State": "paused", "SizeRw": 20},
            {"State": "restarting", "SizeRw": 30},
            {"State": "exited", "SizeRw": 40},
            {"State": "created"},
        ],
        "Volumes": [
            {"Name": "v1", "UsageData": {"Size": 300, "RefCount": 1}},
            {"Name": "v2", "UsageData": {"Size": 100, "RefCount": 0}},
            {"Name": "v3", "UsageData": {"Size": -1, "RefCount": 0}},
            {"Name": "v4", "UsageData": None},
        ],
        "BuildCache": [
            {"ID": "x", "Size": 5000, "InUse": True, "Shared": False},
            {"ID": "y", "Size": 7000, "InUse": False, "Shared": True},  # counted once, elsewhere
            {"ID": "z", "Size": 2000, "InUse": False, "Shared": False},
        ],
    }
    assert [row.cells() for row in parse_df(df)] == [
        ["Images", "3", "2", "1kB", "500B (50%)"],
        ["Containers", "5", "3", "100B", "40B (40%)"],
        ["Local Volumes", "4", "1", "400B", "100B (25%)"],
        ["Build Cache", "3", "1", "7kB", "2kB"],
    ]


def test_engine_29_shape_uses_the_daemons_counts() -> None:
    """API >= 1.53 (moby daemon/server/router/system): only the *Usage objects; Items only with verbose=1."""
    df = {
        "ImageUsage": {"ActiveCount": 2, "TotalCount": 5, "Reclaimable": 11_630_000, "TotalSize": 16_430_000},
        "ContainerUsage": {"ActiveCount": 0, "TotalCount": 2, "Reclaimable": 212, "TotalSize": 212},
        "VolumeUsage": {"ActiveCount": 1, "TotalCount": 2, "Reclaimable": 0, "TotalSize": 36},
        "BuildCacheUsage": {
            "ActiveCount": 0,
            "TotalCount": 4,
            "Reclaimable": 2_000_000,
            "TotalSize": 3_000_000,
        },
    }
    assert df_table(parse_df(df)).splitlines() == [
        "TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE",
        "Images          5         2         16.43MB   11.63MB (70%)",
        "Containers      2         0         212B      212B (100%)",
        "Local Volumes   2         1         36B       0B (0%)",
        "Build Cache     4         0         3MB       2MB",
    ]
    # API 1.52 sends both shapes: the daemon's counts win, as in the v29 CLI.
    both = {**df, "LayersSize": 1, "Images": [], "Containers": [], "Volumes": [], "BuildCache": []}
    assert parse_df(both) == parse_df(df)
    # A type the daemon left out (no builder) is a row of zeros.
    del df["BuildCacheUsage"]
    assert parse_df(df)[3] == DfRow("Build Cache", 0, 0, 0, 0, percent=False)


def test_percentages_truncate_like_go() -> None:
    assert DfRow("Images", 1, 0, 3, 2).cells()[4] == "2B (66%)"
    assert DfRow("Images", 1, 0, 3, -2).cells()[4] == "-2B (-66%)", "Go's / truncates toward zero"


# -------------------------------------------------------------------------------------- largest, unused


def test_ten_largest_images_by_size(seeded: Engine, services: Services) -> None:
    lines = _table_after(build_report(services, services.hosts.default), "*The 10 largest images*")
    assert lines[0].split() == ["IMAGE", "IMAGE", "ID", "SIZE", "CREATED"]
    rows = [line.split() for line in lines[1:]]
    assert len(rows) == 10, "ten of the eleven images"
    ids = dict.fromkeys(seeded.cli("images", "-q", "--no-trunc").stdout.split())
    sizes = {
        i.removeprefix("sha256:")[:12]: int(n)
        for i, n in (x.split() for x in inspect(seeded, "{{.Id}} {{.Size}}", *ids))
    }
    assert [sizes[row[1]] for row in rows] == sorted(sizes.values(), reverse=True)[:10]
    cli_sizes = dict(
        line.split("\t")
        for line in seeded.cli("images", "--format", "{{.ID}}\t{{.Size}}").stdout.splitlines()
    )
    assert all(row[2] == cli_sizes[row[1]] for row in rows), "SIZE as `docker images` prints it"
    assert rows[0][0] == f"{PREFIX}bigger:1"


def test_image_names_as_the_cli_shows_them() -> None:
    def name(tags: list[str], digests: list[str]) -> str:
        return image_name({"Id": "sha256:" + "0" * 64, "RepoTags": tags, "RepoDigests": digests})

    assert name(["docker.io/library/redis:7", "redis:latest"], []) == "redis:7 (+1)"
    assert name([], ["docker.io/library/busybox@sha256:" + "a" * 64]) == "busybox:<none>"
    assert name([], []) == "<none>:<none>"
    assert name(["registry.example.com:5000/" + "x" * 80 + ":1"], []).endswith("…")


def _table_after(message: Message, title: str) -> list[str]:
    """The lines of the code block that follows the section starting with `title`."""
    texts = sections(message)
    [at] = [n for n, text in enumerate(texts) if text.startswith(title)]
    return texts[at + 1].strip("`").splitlines()


def _unused_rows(message: Message) -> tuple[str, list[str]]:
    [title] = [s for s in sections(message) if s.startswith("*Unused for longest*")]
    return title, _table_after(message, title)


def test_unused_for_longest_by_created_time_without_a_ledger(seeded: Engine, services: Services) -> None:
    assert services.ledger is None
    title, lines = _unused_rows(build_report(services, services.hosts.default))
    assert "by creation time" in title and lines[0].split()[-1] == "CREATED"
    used = set(inspect(seeded, "{{.Image}}", PREFIX + "running", PREFIX + "stopped", PREFIX + "writer1"))
    ids = dict.fromkeys(seeded.cli("images", "-q", "--no-trunc").stdout.split())
    created = {
        i: created_unix(c) for i, c in (x.split() for x in inspect(seeded, "{{.Id}} {{.Created}}", *ids))
    }
    expected = sorted((c, i) for i, c in created.items() if i not in used)
    assert [line.split()[1] for line in lines[1:]] == [i.removeprefix("sha256:")[:12] for _, i in expected]
    assert len(expected) == 8, "11 images, 3 used by a container (running, created or exited)"


def test_unused_for_longest_by_the_ledger(seeded: Engine, services: Services) -> None:
    now = time.time()
    ids = {
        ref: inspect(seeded, "{{.Id}}", ref)[0] for ref in ("ubuntu:latest", "redis:7", f"{PREFIX}bigger:1")
    }
    ledger = FakeLedger({ids["ubuntu:latest"]: now - 22 * 86400, ids[f"{PREFIX}bigger:1"]: now - 3600})
    services.ledger = ledger
    title, lines = _unused_rows(build_report(services, services.hosts.default, now=now))
    assert "by last use" in title and lines[0].split()[-2:] == ["LAST", "USED"]
    assert ("local", ids["redis:7"]) in ledger.asked
    by_id = {line.split()[1]: line for line in lines[1:]}
    short = {ref: i.removeprefix("sha256:")[:12] for ref, i in ids.items()}
    assert by_id[short["ubuntu:latest"]].endswith("3 weeks ago")
    assert by_id[short[f"{PREFIX}bigger:1"]].endswith("About an hour ago")
    assert re.search(r"never \(created .+ ago\)$", by_id[short["redis:7"]])
    assert lines[1].split()[1] == short["ubuntu:latest"], "used 3 weeks ago beats everything built since"
    # The rest: by last use, or by Created for an image the ledger never saw used.
    created = dict(x.split() for x in inspect(seeded, "{{.Id}} {{.Created}}", *{i for _, i in ledger.asked}))
    expected = sorted((ledger.seen.get(i) or created_unix(c), i) for i, c in created.items())
    assert [line.split()[1] for line in lines[1:]] == [i.removeprefix("sha256:")[:12] for _, i in expected]


def test_unused_for_longest_with_the_bots_ledger(seeded: Engine, services: Services) -> None:
    """bot.engine.ledger.Ledger: images it seeded from their Created time were never seen used."""
    now = time.time()
    host = services.hosts.default
    ledger = Ledger(services.store.engine)
    ubuntu, redis = (inspect(seeded, "{{.Id}}", ref)[0] for ref in ("ubuntu:latest", "redis:7"))
    ledger.touch("local", ubuntu, now - 2 * 3600, "container die")
    ledger.seed("local", list_images(host.api))
    services.ledger = ledger
    title, lines = _unused_rows(build_report(services, host, now=now))
    assert "by last use" in title
    by_id = {line.split()[1]: line for line in lines[1:]}
    assert by_id[ubuntu.removeprefix("sha256:")[:12]].endswith("2 hours ago")
    assert re.search(r"never \(created .+ ago\)$", by_id[redis.removeprefix("sha256:")[:12]])


def test_a_failing_ledger_falls_back_to_created_time(seeded: Engine, services: Services) -> None:
    class Broken:
        def last_used(self, host_name: str, image_id: str) -> float | None:
            raise RuntimeError("ledger database is locked")

    services.ledger = Broken()
    title, _ = _unused_rows(build_report(services, services.hosts.default))
    assert "by creation time" in title


# --------------------------------------------------------------------------------------------- chart


def test_the_chart_is_a_png_matplotlib_drew() -> None:
    rows = [DfRow("Images", 5, 2, 16_430_000, 11_630_000), DfRow("Containers", 2, 1, 212, 100)]
    rows += [DfRow("Local Volumes", 0, 0, 0, 0), DfRow("Build Cache", 0, 0, 0, 0, percent=False)]
    largest = [
        ImageLine(f"image-{n}:latest", f"sha256:{n:064x}", n * 1_000_000, None) for n in range(10, 0, -1)
    ]
    data = render_chart(rows, largest, title="Docker disk usage on test")
    width, height, texts = png_info(data)
    assert texts[b"Software"].startswith(b"Matplotlib version")
    assert (width, height) == (1000, 750)
    assert 10_000 < len(data) < 1_000_000
    for color in (USED_COLOR, RECLAIM_COLOR, IMAGE_COLOR):
        assert pixels_of(data, color) > 500, f"bars in {color}"


def test_the_chart_of_an_empty_host_still_renders() -> None:
    data = render_chart([DfRow("Images", 0, 0, 0, 0)], [])
    assert png_info(data)[:2] == (1000, 750)
    assert pixels_of(data, IMAGE_COLOR) == 0


def test_matplotlib_is_not_loaded_until_a_chart_is_drawn() -> None:
    code = "import sys, handlers, bot.jobs.report; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------------------------- report now


def test_report_now_in_the_terminal(chat: ChatBot, seeded: Engine, tmp_path: Path) -> None:
    out = chat("/docker report now")
    assert "Docker disk usage on local" in out
    cli_table = [line.rstrip() for line in seeded.cli("system", "df").stdout.splitlines()]
    assert "\n".join(cli_table) in out
    saved = tmp_path / "files" / "disk-usage-local.png"
    assert saved.read_bytes()[:8] == PNG_SIGNATURE
    assert chat("/docker report").count("Docker disk usage on local") >= 1, "`now` is the default"


def test_report_now_is_for_everyone(router: Router, seeded: Engine) -> None:
    assert "TYPE            TOTAL" in ChatBot(router).say_as("report now", "U555")


def test_report_now_through_slack(slack_http: SlackHttpBot, seeded: Engine) -> None:
    status, _ = slack_http.command("report now", tag="report")
    assert status == 200
    [reply] = slack_http.slack.wait_for("response_url", lambda c: c.tag == "report", timeout=30)
    assert reply.ok and reply.body["response_type"] == "in_channel"
    check_block_kit(reply.body["blocks"])
    texts = "\n".join(b["text"]["text"] for b in reply.body["blocks"] if b["type"] == "section")
    cli_table = [line.rstrip() for line in seeded.cli("system", "df").stdout.splitlines()]
    assert "\n".join(cli_table) in texts
    [asked] = slack_http.slack.wait_for("files.getUploadURLExternal")
    assert asked.body["filename"] == "disk-usage-local.png"
    [upload] = slack_http.slack.wait_for("file_upload")
    assert upload.ok and PNG_SIGNATURE in upload.raw
    [done] = slack_http.slack.wait_for("files.completeUploadExternal")
    assert done.ok and done.body["channel_id"] == "C111"
    assert "disk-usage-local.png" in str(reply.body["blocks"]), "the message says where the chart is"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "report bogus",
            "invalid choice: 'bogus' (choose from 'now', 'schedule', 'list', 'cancel', 'pause', 'resume')",
        ),
        ("report cancel", "report cancel needs a schedule ID"),
        ("report list --tz UTC", "takes no --channel or --tz"),
        ('report now "0 8 * * *"', "takes no CRON"),
        ("report now --tz UTC", "takes no CRON, --channel or --tz"),
        ("report schedule", "needs a cron expression"),
        ('report schedule "0 8 * * 1" --channel "bad name!"', "is not a channel"),
    ],
)
def test_bad_input_gets_a_short_usage_reply(chat: ChatBot, line: str, expected: str) -> None:
    out = chat(line)
    assert expected in out and "Usage:" in out and "Traceback" not in out


# --------------------------------------------------------------------------------------------- schedules


@pytest.fixture
def scheduler(services: Services) -> Iterator[tuple[Scheduler, Inbox]]:
    inbox = Inbox()
    sched = Scheduler(services, inbox)  # type: ignore[arg-type]
    sched.start()
    services.scheduler = sched
    yield sched, inbox
    sched.shutdown(wait=False)
    services.scheduler = None


def test_schedule_a_report_then_run_it(
    chat: ChatBot, seeded: Engine, scheduler: tuple[Scheduler, Inbox], services: Services
) -> None:
    sched, inbox = scheduler
    out = chat('report schedule "0 8 * * 1" --channel <#C0123ABCD|ops> --tz Europe/Berlin')
    [made] = sched.list("report")
    assert (made.cron, made.timezone, made.channel, made.host, made.created_by) == (
        "0 8 * * 1",
        "Europe/Berlin",
        "C0123ABCD",
        "local",
        "terminal",
    )
    assert f"scheduled as {made.id}" in out
    when = re.search(r"Next run: (\d{4}-\d\d-\d\d) 08:00 CES?T", out)
    assert when and datetime.fromisoformat(when.group(1)).weekday() == 0, "a Monday, 08:00 in Berlin"
    assert services.store.recent_audit(1)[0]["action"] == "report.schedule"

    sched.run(made.id)
    [(channel, message)] = inbox.sent
    assert channel == "C0123ABCD" and message.in_channel
    assert message.files and message.files[0].content[:8] == PNG_SIGNATURE
    assert "TYPE            TOTAL" in str(message.blocks) and f"Schedule `{made.id}`" in str(message.blocks)


def test_schedule_rejects_a_bad_cron_or_zone(chat: ChatBot, scheduler: tuple[Scheduler, Inbox]) -> None:
    assert "is not a valid cron expression" in chat('report schedule "61 8 * * *"')
    assert "needs 5 fields" in chat('report schedule "daily"')
    assert "Unknown time zone Mars/Olympus" in chat('report schedule "0 8 * * *" --tz Mars/Olympus')
    assert scheduler[0].list("report") == []


def test_schedule_defaults_to_this_channel_and_utc(chat: ChatBot, scheduler: tuple[Scheduler, Inbox]) -> None:
    assert "needs the channel's ID, not its name #ops" in chat('report schedule "30 6 * * *" --channel #ops')
    chat('report schedule "30 6 * * *" --channel C0OPS')
    chat('report schedule "30 7 * * *"')
    first, second = scheduler[0].list("report")
    assert (first.channel, first.timezone) == ("C0OPS", "UTC")
    assert (second.channel, second.timezone) == ("terminal", "UTC")


def test_only_admins_schedule(router: Router, scheduler: tuple[Scheduler, Inbox]) -> None:
    assert "needs the admin role" in ChatBot(router).say_as('report schedule "0 8 * * 1"', "U555")
    assert scheduler[0].list("report") == []
    assert router.services.store.recent_audit(1)[0]["action"] == "report.refused"


def test_schedule_without_a_scheduler_says_so(chat: ChatBot, services: Services) -> None:
    assert services.scheduler is None
    assert "Scheduling is not running in this process." in chat('report schedule "0 8 * * 1"')


# --------------------------------------------------------------------------------------------- engine down


def test_a_scheduled_report_never_raises_when_the_engine_is_down(services: Services, engine: Engine) -> None:
    gone = DockerHost(name="gone", url="unix:///nonexistent/dockerbot-report.sock", timeout=5)
    message = run_scheduled_report(services, gone, {})
    assert "No disk-usage report for host `gone`" in message.text
    assert "Cannot reach the Docker engine on host `gone`" in message.text and message.in_channel

    host = services.hosts.default
    assert "Docker disk usage on local" in run_scheduled_report(services, host, {}).text  # client cached
    engine.stop()
    try:
        message = run_scheduled_report(services, host, {})
    finally:
        engine.start()
    assert "Cannot reach the Docker engine on host `local`" in message.text
    assert "Docker disk usage on local" in run_scheduled_report(services, host, {}).text, "back again"


def test_a_failed_upload_still_posts_the_report_and_says_so(slack_http: SlackHttpBot, seeded: Engine) -> None:
    """The upload URL answering 500 makes slack_sdk raise SlackRequestError, not SlackApiError."""
    slack_http.slack.fail("file_upload", 500)
    status, _ = slack_http.command("report now", tag="nochart")
    assert status == 200
    [reply] = slack_http.slack.wait_for("response_url", lambda c: c.tag == "nochart", timeout=30)
    assert reply.ok and reply.body["response_type"] == "in_channel"
    texts = str(reply.body["blocks"])
    assert "TYPE            TOTAL" in texts, "the report itself"
    assert "Could not attach `disk-usage-local.png` (the upload failed)." in texts
    assert "Something went wrong" not in texts
    assert not slack_http.slack.calls("files.completeUploadExternal")


def test_report_schedules_are_listed_paused_resumed_and_cancelled(
    chat: ChatBot, router: Router, scheduler: tuple[Scheduler, Inbox]
) -> None:
    sched, _ = scheduler
    assert "No report schedules" in chat("report list")
    chat('report schedule "0 8 * * 1" --channel C0OPS')
    [made] = sched.list("report")
    listing = chat("report list")
    assert made.id in listing and "C0OPS" in listing and "active" in listing
    assert "needs the admin role" in ChatBot(router).say_as(f"report cancel {made.id}", "U555")
    assert "Paused report schedule" in chat(f"report pause {made.id}") and "paused" in chat("report list")
    assert sched.get(made.id).next_run is None
    assert "Resumed report schedule" in chat(f"report resume {made.id}")
    assert sched.get(made.id).next_run is not None
    # The other command names this one, and what it names works.
    wrong = chat(f"cleanup cancel {made.id}")
    assert "is a report schedule; use /docker report cancel" in wrong
    assert "Cancelled report schedule" in chat(f"report cancel {made.id}")
    assert sched.list("report") == [] and "No report schedules" in chat("report list")
    assert "There is no schedule" in chat(f"report resume {made.id}")
    assert [a["action"] for a in router.services.store.recent_audit(4)][:3] == [
        "report.cancel",
        "report.resume",
        "report.pause",
    ]


def test_a_scheduled_report_says_how_to_stop_it(
    chat: ChatBot, seeded: Engine, scheduler: tuple[Scheduler, Inbox]
) -> None:
    sched, inbox = scheduler
    chat('report schedule "0 8 * * 1" --channel C0OPS')
    [made] = sched.list("report")
    sched.run(made.id)
    [(_, message)] = inbox.sent
    assert f"/docker report cancel {made.id}" in str(message.blocks[-1])
    assert "Cancelled" in chat(f"report cancel {made.id}")


def test_a_schedule_stored_with_a_channel_name_still_posts_its_report(
    services: Services, settings: Settings, fake_slack: FakeSlack, seeded: Engine
) -> None:
    """Schedules made before channels were kept as IDs: files.completeUploadExternal would refuse
    `channel_id="#ops"`, so the report goes without its chart and says why."""
    fake_slack.channels["ops"] = "C0OPS"
    poster = SlackPoster(make_web_client(settings.model_copy(update={"slack_api_url": fake_slack.api_url})))
    poster.post("#ops", run_scheduled_report(services, services.hosts.default, {}))
    [posted] = fake_slack.calls("chat.postMessage", ok=True)
    assert "files need the channel's ID, not #ops" in str(posted.body["blocks"])
    assert not fake_slack.calls("files.completeUploadExternal") and not fake_slack.violations
