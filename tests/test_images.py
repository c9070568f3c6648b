"""/docker images against a real engine, with the docker CLI on the same engine as the oracle."""

from __future__ import annotations

import itertools
import re
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.engine.images import image_rows, list_images
from bot.render.formatting import human_size
from bot.render.messages import MAX_SECTION_TEXT, Message
from bot.render.text import render
from bot.sandbox import Engine, Sandbox
from bot.slack.limits import MAX_MESSAGE_BLOCKS
from bot.state.listings import ListingStore
from bot.terminal.shell import TerminalRef, TerminalReply
from handlers.images import MORE_ACTION, Listing, paginate
from tests.chat import ChatBot
from tests.conftest import SlackHttpBot
from tests.fakes.slack_requests import block_actions_body, block_actions_payload, post_signed

# Every test here compares the bot with the docker CLI: once on each engine (tests/conftest.py).
pytestmark = pytest.mark.both_engines

Cli = Callable[..., Any]
ROW_FORMAT = "{{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
DIGEST_FORMAT = "{{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
SUMMARY = re.compile(r"^(\d+) images?, (\S+) total, (\d+) unused")
PAGING_REPO = "dockerbot-paging/app"


# --------------------------------------------------------------------------------------------- helpers


def bot_rows(out: str) -> list[tuple[str, ...]]:
    """The table rows of the bot's reply (columns are separated by 3+ spaces, as tabwriter pads)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("REPOSITORY"))
    width = len(re.split(r" {3,}", lines[start]))
    rows = []
    for line in lines[start + 1 :]:
        cells = tuple(re.split(r" {3,}", line))
        if len(cells) != width:
            break
        rows.append(cells)
    return rows


def cli_rows(cli: Cli, *args: str, digests: bool = False) -> list[tuple[str, ...]]:
    fmt = DIGEST_FORMAT if digests else ROW_FORMAT
    out = cli("images", *args, "--format", fmt).stdout
    return [tuple(line.split("\t")) for line in out.splitlines() if line]


def assert_rows_match_cli(cli: Cli, run: Callable[[], str], *args: str, digests: bool = False) -> str:
    """The bot's rows equal the CLI's, as multisets; CREATED may tick between the two runs, so
    each row may match the CLI run just before or just after the bot's."""
    before = cli_rows(cli, *args, digests=digests)
    out = run()
    after = cli_rows(cli, *args, digests=digests)
    if not before and not after:
        assert "No images match" in out or "There are no images" in out, out
        return out
    # A table longer than one page comes whole as a file (`(… saved to PATH)`): compare that.
    saved = re.search(r"saved to (\S+\.txt)\)", out)
    rows = bot_rows(Path(saved.group(1)).read_text() if saved else out)
    assert len(rows) == len(before) == len(after), (rows, before)
    assert all(row in before or row in after for row in rows), (rows, before, after)
    ticked = Counter(rows) == Counter(before) or Counter(rows) == Counter(after)
    assert ticked or set(rows) <= set(before) | set(after)
    return out


def summary_of(out: str) -> tuple[int, str, int]:
    match = next(m for line in out.splitlines() if (m := SUMMARY.match(line)))
    return int(match[1]), match[2], int(match[3])


def expected_summary(cli: Cli, *args: str) -> tuple[int, str, int]:
    """From the CLI alone: distinct image IDs, the sum of their sizes, and how many no container uses."""
    ids = set(cli("images", "-q", "--no-trunc", *args).stdout.split())
    if not ids:
        return 0, human_size(0), 0
    sizes = cli("image", "inspect", "--format", "{{.Size}}", *sorted(ids)).stdout.split()
    containers = cli("ps", "-a", "-q", "--no-trunc").stdout.split()
    used = set(cli("inspect", "--format", "{{.Image}}", *containers).stdout.split()) if containers else set()
    return len(ids), human_size(sum(int(s) for s in sizes)), len(ids - used)


_UNITS = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}


def _bytes(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)\s*([kMGT]?B)", text.strip()).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def assert_summary(out: str, cli: Cli, *args: str) -> None:
    """The summary line against the CLI. On the classic store the total is exact (sum of `image inspect`
    .Size). The containerd store differs on purpose: `image inspect` .Size counts only the image's
    content (compressed blobs) while `docker images` SIZE adds its unpacked snapshots, and the summary
    adds the SIZE column; the CLI prints that column in 3-digit units, so the total agrees within 1%."""
    count, size, unused = summary_of(out)
    want_count, want_size, want_unused = expected_summary(cli, *args)
    assert (count, unused) == (want_count, want_unused), out
    if not cli.__self__.containerd_store:  # type: ignore[attr-defined]
        assert size == want_size, out
        return
    ids = set(cli("images", "-q", "--no-trunc", *args).stdout.split())
    column = dict(
        line.split("\t")
        for line in cli("images", "--no-trunc", "--format", "{{.ID}}\t{{.Size}}").stdout.splitlines()
    )
    expected = sum(_bytes(column[i]) for i in ids if i in column)
    assert abs(_bytes(size) - expected) <= 0.01 * max(expected, 1), (out, expected)


def created_of(cli: Cli, image_ids: list[str]) -> dict[str, str]:
    out = cli("image", "inspect", "--format", "{{.Id}} {{.Created}}", *sorted(set(image_ids))).stdout
    return {line.split()[0].removeprefix("sha256:")[:12]: line.split()[1] for line in out.splitlines()}


def build(cli: Cli, tag: str, dockerfile: str) -> str:
    """A tiny image FROM ubuntu (no download); returns its full ID."""
    return cli("build", "-q", "-t", tag, "-", input=dockerfile.encode()).stdout.strip()


@pytest.fixture(scope="module")
def extra_images(engine: Engine, pulled: None) -> Iterator[dict[str, str]]:
    """A labelled image and a dangling one (an old build whose tag moved on)."""
    dangling = build(engine.cli, "dockerbot-test/moved:1", "FROM ubuntu\nLABEL dockerbot.test=old\n")
    labelled = build(
        engine.cli, "dockerbot-test/moved:1", "FROM ubuntu\nLABEL dockerbot.test=web dockerbot.team=a\n"
    )
    yield {"dangling": dangling, "labelled": labelled}
    engine.cli("rmi", "-f", labelled, dangling, check=False)


@pytest.fixture(scope="module")
def digest_only(engine: Engine, sandbox: Sandbox) -> Iterator[str]:
    """alpine pulled by digest alone: a repo with a digest and no tag (`alpine <none>`)."""
    request = urllib.request.Request(
        f"http://{sandbox.registry.address}/v2/library/alpine/manifests/latest",
        method="HEAD",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=10) as resp:
        ref = f"alpine@{resp.headers['Docker-Content-Digest']}"
    engine.cli("pull", "-q", ref)
    yield ref
    engine.cli("rmi", ref, check=False)


@pytest.fixture(scope="module")
def sixty_tags(engine: Engine, pulled: None) -> Iterator[list[str]]:
    """60 rows cheaply: tags of one image, removed afterwards so other tests see a clean engine."""
    tags = [f"{PAGING_REPO}:t{i:02d}" for i in range(60)]
    for tag in tags:
        engine.cli("tag", "ubuntu", tag)
    yield tags
    engine.cli("rmi", *tags, check=False)


# --------------------------------------------------------------------------------------------- the table


def test_images_table_and_summary_match_the_cli(chat: ChatBot, docker_cli: Cli, pulled: None) -> None:
    docker_cli("create", "--name", "dockerbot-images-user", "ubuntu")
    try:
        out = assert_rows_match_cli(docker_cli, lambda: chat("/docker images"))
        assert_summary(out, docker_cli)
        assert "Traceback" not in out
        # Newest first, by the engine's own Created dates, to the second: the image list gives
        # seconds, so images made within one second may come in any order (as in the CLI).
        created = created_of(docker_cli, [row[2] for row in bot_rows(out)])
        seconds = [created[row[2]][:19] for row in bot_rows(out)]
        assert seconds == sorted(seconds, reverse=True)
        assert_rows_match_cli(docker_cli, lambda: chat("/docker ls"))  # the alias
    finally:
        docker_cli("rm", "-f", "dockerbot-images-user")
    assert_summary(chat("/docker images"), docker_cli)  # one more unused now


@pytest.mark.parametrize(
    "args",
    [
        ["ubuntu"],
        ["openresty/*"],
        ["--filter", "reference=ubuntu:*"],
        ["--filter", "dangling=true"],
        ["--filter", "dangling=false"],
        ["--filter", "label=dockerbot.test"],
        ["--filter", "label=dockerbot.test=web", "--filter", "label=dockerbot.team=a"],
        ["--filter", "since=ubuntu"],
        ["--filter", "before=dockerbot-test/moved:1"],
        ["-a"],
        ["no-such-repo"],
    ],
    ids=lambda args: " ".join(args),
)
def test_images_arguments_match_the_cli(
    chat: ChatBot, docker_cli: Cli, extra_images: dict[str, str], args: list[str]
) -> None:
    out = assert_rows_match_cli(docker_cli, lambda: chat("/docker images " + " ".join(args)), *args)
    if docker_cli("images", "-q", *args).stdout.strip():
        assert_summary(out, docker_cli, *args)


def test_digests_column_matches_the_cli(chat: ChatBot, docker_cli: Cli, extra_images: dict[str, str]) -> None:
    assert_rows_match_cli(docker_cli, lambda: chat("/docker images --digests"), "--digests", digests=True)


def test_digest_only_repo_matches_the_cli(chat: ChatBot, docker_cli: Cli, digest_only: str) -> None:
    assert_rows_match_cli(docker_cli, lambda: chat("/docker images alpine"), "alpine")
    out = assert_rows_match_cli(
        docker_cli, lambda: chat("/docker images alpine --digests"), "alpine", "--digests", digests=True
    )
    assert digest_only.split("@")[1] in out


def test_untagged_images_read_the_same_on_every_api_version(
    services: Any, docker_cli: Cli, extra_images: dict[str, str]
) -> None:
    api = services.hosts.default.api
    raw = {s["Id"]: s for s in api.images(all=True)}[extra_images["dangling"]]
    # API < 1.43 says "<none>:<none>", newer ones an empty list; list_images gives one shape.
    assert raw["RepoTags"] in ([], None, ["<none>:<none>"])
    [mine] = [s for s in list_images(api, all=True) if s["Id"] == extra_images["dangling"]]
    assert mine["RepoTags"] == [] and mine["RepoDigests"] == []
    [row] = image_rows([mine])
    assert (row.repository, row.tag) == ("<none>", "<none>")


def test_sort_by_size_and_by_name(chat: ChatBot, docker_cli: Cli, extra_images: dict[str, str]) -> None:
    cli = cli_rows(docker_cli)
    by_name = bot_rows(chat("/docker images --sort name"))
    assert Counter(r[:3] for r in by_name) == Counter(r[:3] for r in cli)
    named = [(r[0], r[1]) for r in by_name if r[0] != "<none>"]
    assert named == sorted(named)
    assert all(r[0] == "<none>" for r in by_name[len(named) :])  # untagged last
    by_size = bot_rows(chat("/docker images --sort size"))
    assert Counter(r[:3] for r in by_size) == Counter(r[:3] for r in cli)
    out = docker_cli("image", "inspect", "--format", "{{.Id}} {{.Size}}", *{r[2] for r in by_size}).stdout
    size = {line.split()[0].removeprefix("sha256:")[:12]: float(line.split()[1]) for line in out.splitlines()}
    if docker_cli.__self__.containerd_store:  # type: ignore[attr-defined]
        # Sorted by the SIZE column, which on the containerd store is not inspect's .Size (assert_summary).
        column = docker_cli("images", "-a", "--format", "{{.ID}}\t{{.Size}}").stdout.splitlines()
        size = {i: _bytes(v) for i, v in (line.split("\t") for line in column)}
    assert [size[r[2]] for r in by_size] == sorted((size[r[2]] for r in by_size), reverse=True)


# --------------------------------------------------------------------------------------------- bad input


def test_bad_input_gets_the_clis_error_and_changes_nothing(
    chat: ChatBot, docker_cli: Cli, pulled: None
) -> None:
    # Sorted: the CLI's order among images created in the same second is not stable.
    before = sorted(r[:3] for r in cli_rows(docker_cli, "-a"))
    # A filter the engine does not know: the engine's own words, as the CLI prints them.
    cli = docker_cli("images", "--filter", "foo=bar", check=False)
    assert cli.returncode != 0
    assert chat("/docker images --filter foo=bar").strip() == cli.stderr.strip()
    cli = docker_cli("images", "--filter", "dangling=maybe", check=False)
    assert chat("/docker images --filter dangling=maybe").strip() == cli.stderr.strip()
    cli = docker_cli("images", "[", check=False)
    if docker_cli.__self__.containerd_store:  # type: ignore[attr-defined]
        # The containerd store matches the bad pattern against nothing (an empty table, no error);
        # the classic store refuses it ("syntax error in pattern").
        assert cli.returncode == 0 and cli_rows(docker_cli, "[") == []
        assert "No images match [." in chat("/docker images [")
    else:
        assert chat("/docker images [").strip() == cli.stderr.strip()
    # Malformed flags are refused before the engine is asked, with the usage.
    out = chat("/docker images --filter label")
    assert "bad format of filter (expected name=value)" in out and "Usage:" in out
    out = chat("/docker images --sort colour")
    assert "invalid choice: 'colour'" in out and "Usage:" in out
    # An invalid reference matches nothing, as in the CLI (which prints an empty table).
    assert cli_rows(docker_cli, "Bad::") == []
    assert "No images match Bad::." in chat("/docker images Bad::")
    out = chat("/docker images " + "x" * 1000)
    assert "No images match " + "x" * 199 + "…." in out
    assert sorted(r[:3] for r in cli_rows(docker_cli, "-a")) == before


# --------------------------------------------------------------------------------------------- paging


def test_paginate_fills_pages_up_to_the_budget() -> None:
    rows = [f"row-{i:03d} " + "x" * (i % 37) for i in range(300)]
    pages = paginate("HEADER", rows, budget=500)
    assert pages[0][0] == 0 and pages[-1][1] == len(rows)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(pages))  # no gap, no overlap
    for start, end in pages:
        size = len("\n".join(["HEADER", *rows[start:end]]))
        assert size <= 500
        if end < len(rows):  # full: the next row would not have fitted
            assert size + 1 + len(rows[end]) > 500


def test_listing_store_is_bounded_and_expires() -> None:
    now = [0.0]
    store = ListingStore(capacity=2, ttl=60, clock=lambda: now[0])
    listing = Listing(host="h", header="H", rows=["r"], pages=[(0, 1)], summary="s")
    a, b = store.add(listing), store.add(listing)
    assert a != b and store.get(a) is listing
    c = store.add(listing)  # b is now the least recently used
    assert store.get(b) is None and store.get(a) is listing and store.get(c) is listing
    now[0] = 61
    assert store.get(a) is None


def _check_limits(body: dict[str, Any]) -> None:
    blocks = body["blocks"]
    assert len(blocks) <= MAX_MESSAGE_BLOCKS
    for block in blocks:
        assert len(block.get("text", {}).get("text", "")) <= MAX_SECTION_TEXT


def test_sixty_rows_page_in_slack_with_more_and_a_file(
    slack_http: SlackHttpBot, docker_cli: Cli, sixty_tags: list[str]
) -> None:
    slack = slack_http.slack
    expected = cli_rows(docker_cli, PAGING_REPO)
    assert len(expected) == 60
    status, _ = slack_http.command(f"images {PAGING_REPO}", tag="images")
    assert status == 200
    first, note = slack.wait_for("response_url", lambda c: c.tag == "images", count=2, timeout=20)
    assert first.ok and note.ok, (first.response, note.response)
    _check_limits(first.body)
    page1 = bot_rows(render(Message(text="", blocks=first.body["blocks"])))
    assert 0 < len(page1) < 60
    # The whole table comes as a file (files upload v2), in the requester's DMs: the reply is private.
    # The first page goes out before it, and a second message says where it went.
    [upload] = slack.wait_for("file_upload", ok=True)
    [complete] = slack.wait_for("files.completeUploadExternal", ok=True)
    [dm] = slack.wait_for("conversations.open", ok=True)
    assert dm.body["users"] == "U111" and complete.body["channel_id"] == dm.response["channel"]["id"]
    order = slack.calls()
    assert order.index(first) < order.index(dm) < order.index(complete) < order.index(note)
    assert "sent to you in a direct message as images.txt" in render(
        Message(text="", blocks=note.body["blocks"])
    )
    assert "60 rows" in note.body["text"] and "More" not in str(note.body["blocks"])
    table = upload.raw.decode()
    assert len(bot_rows(table)) == 60 and summary_of(table)[0] == 1
    [more] = next(b for b in first.body["blocks"] if b["type"] == "actions")["elements"]
    assert more["action_id"].endswith(MORE_ACTION) and more["text"]["text"] == "More"
    assert "images" not in more["value"] and PAGING_REPO not in more["value"]  # a token, not a command
    # Press More: the next page replaces the card.
    payload = block_actions_payload(
        more["action_id"],
        more["value"],
        response_url=slack.response_url("more"),
        message=first.body,
        is_ephemeral=True,
    )
    status, _ = post_signed(slack_http.url, block_actions_body(payload), slack_http.secret)
    assert status == 200
    [second] = slack.wait_for("response_url", lambda c: c.tag == "more", timeout=20)
    assert second.ok and second.body.get("replace_original") is True
    _check_limits(second.body)
    page2 = bot_rows(render(Message(text="", blocks=second.body["blocks"])))
    assert not set(page1) & set(page2)
    pages = page1 + page2
    if len(pages) < 60:  # a third page would need another press; the card says so
        assert any(b["type"] == "actions" for b in second.body["blocks"])
    else:
        assert not any(b["type"] == "actions" for b in second.body["blocks"])
    assert Counter(r[:3] for r in pages) <= Counter(r[:3] for r in expected)
    assert Counter(r[:3] for r in bot_rows(table)) == Counter(r[:3] for r in expected)


def test_more_in_the_terminal_and_after_expiry(
    chat: ChatBot, docker_cli: Cli, sixty_tags: list[str], tmp_path: Path
) -> None:
    first = chat(f"/docker images {PAGING_REPO}")
    assert "[More]" in first and "page 1 of" in first
    assert first.index("[More]") < first.index("(docker images on local (60 rows) saved to ")  # page first
    saved = (tmp_path / "files" / "images.txt").read_text()
    assert len(bot_rows(saved)) == 60
    second = chat("More")
    assert "page 2 of" in second
    assert not set(bot_rows(first)) & set(bot_rows(second))
    # A token the bot does not hold (expired, or from before a restart): a clear note, no traceback.
    start = len(chat.transcript)
    chat.shell.router.press(
        "dockerbot:" + MORE_ACTION,
        "not-a-token:1",
        user="U1",
        channel="C1",
        message=TerminalRef(1),
        reply=TerminalReply(chat.shell),
    )
    out = chat.transcript[start:]
    assert "expired" in out and "Traceback" not in out
