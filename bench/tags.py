"""Issue 17, 10,000 tags: `images` over 10,000 tags on 2,500 images, in the warm bot and through Slack.

1. The warm bot's `/docker images` (the whole table, as the terminal shows and saves it) vs
   `docker images`, interleaved rounds, medians.
2. The served bot (`python -m bot serve`, HTTP mode) and the strict fake Slack: seconds from the
   command's ack to its first page reaching the response_url, median of rounds. Then the last
   round's listing is paged through with More to its end: every page must pass the fake's rules,
   and the pages together must hold exactly the CLI's rows.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from typing import Any

from bench import seeding
from bench.figures import Figure, median
from bench.harness import World
from bench.listing import bot_vs_cli
from bench.slackbot import BotProcess, running
from bot.render.messages import Message
from bot.render.text import render
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_requests import find_button

PREFIX = "bench-tags/app"
TAGS_PER_IMAGE = 4  # 10,000 tags over 2,500 images
Rows = Counter[tuple[str, str, str]]  # (REPOSITORY, TAG, IMAGE ID): how many rows show it


def run(world: World, tags: int, reps: int, slack_rounds: int) -> list[Figure]:
    images = tags // TAGS_PER_IMAGE
    seed = seeding.load_many_tags(world.box.engine, world.api, PREFIX, images, TAGS_PER_IMAGE)
    print(f"  {seed.tags} tags over {seed.images} images seeded in {seed.seconds:.1f} s ({seed.method})")
    expected = cli_rows(world)
    if len(expected) != tags:
        raise RuntimeError(f"docker images lists {len(expected)} rows, not {tags}")
    return [terminal(world, tags, images, reps), *slack(world, tags, expected, slack_rounds)]


def cli_rows(world: World) -> Rows:
    """REPOSITORY, TAG and IMAGE ID of each row of `docker images`."""
    out = subprocess.run(
        [world.cli.binary, "images", "--format", "{{.Repository}} {{.Tag}} {{.ID}}"],
        env=world.cli.env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    rows: Rows = Counter()
    for line in out.splitlines():
        repository, tag, image_id = line.split()
        rows[(repository, tag, image_id)] += 1
    return rows


def terminal(world: World, tags: int, images: int, reps: int) -> Figure:
    bot_ms, cli_ms = bot_vs_cli(world, world.warm_bot(), images, reps)
    note = f"bot {bot_ms:.0f} ms vs CLI {cli_ms:.0f} ms (medians of {reps}); {images} images"
    print(f"  images on {tags} tags: {note}", flush=True)
    return Figure(f"images_{tags}_tags_vs_cli", round(bot_ms / cli_ms, 2), "ratio", 1.0, "lower", note)


def slack(world: World, tags: int, expected: Rows, rounds: int) -> list[Figure]:
    with FakeSlack() as fake, running(fake, "http", world.tmp / "tags-slack") as bot:
        first_page(bot, "warm-up")  # imports, connections, the engine's caches
        delays = [first_page(bot, f"tags-{i}") for i in range(rounds)]
        card = next(c for c in fake.calls("response_url") if c.tag == f"tags-{rounds - 1}")
        presses, rows = page_through(bot, card.body, tags)
        if fake.violations:
            raise RuntimeError(
                f"the fake Slack refused {len(fake.violations)} payloads: {fake.violations[:3]}"
            )
    if rows != expected:
        raise RuntimeError(
            f"the pages hold {sum(rows.values())} rows and the CLI lists {sum(expected.values())}: "
            f"{len(rows - expected)} rows only on the pages, {len(expected - rows)} only in the CLI's list"
        )
    ms = [d * 1000 for d in delays]
    note = (
        f"{rounds} rounds, {min(ms):.0f}–{max(ms):.0f} ms; then {len(presses) + 1} pages (every row, "
        f"each within Slack's limits) paged by More, median {median(presses) * 1000:.0f} ms a press"
    )
    print(f"  first page after the ack: {note}", flush=True)
    return [
        Figure(
            f"images_{tags}_tags_slack_first_page_after_ack",
            round(median(delays), 3),
            "s",
            1.0,
            "lower",
            note,
        ),
        Figure(f"images_{tags}_tags_slack_more_press", round(median(presses), 3), "s", None, "lower", note),
    ]


def first_page(bot: BotProcess, tag: str) -> float:
    """Send `/docker images`; seconds from its ack to the first page reaching the response_url. The
    whole table comes after it as a file (checked: uploaded after the page was posted)."""
    bot.command("images", tag)
    acked = time.time()
    page = bot.slack.wait_for("response_url", lambda c: c.tag == tag, timeout=60)[0]  # then the file's note
    if not page.ok or find_button(page.body.get("blocks") or [], "More") is None:
        raise RuntimeError(f"the first page was refused or had no More button: {page.short()}")
    bot.slack.wait_for("files.completeUploadExternal", lambda c: c.at >= page.at, timeout=60, ok=True)
    return page.at - acked


def page_through(bot: BotProcess, card: dict[str, Any], tags: int) -> tuple[list[float], Rows]:
    """Press More until the last page; (seconds per press, rows of all pages)."""
    rows = page_rows(card)
    presses = []
    for n in range(tags):  # a page holds at least one row
        more = find_button(card.get("blocks") or [], "More")
        if more is None:
            return presses, rows
        tag = f"more-{n}"
        started = time.time()
        bot.press(more, card, tag)
        [page] = bot.slack.wait_for("response_url", lambda c: c.tag == tag, timeout=60)  # noqa: B023
        if not page.ok or page.body.get("replace_original") is not True:
            raise RuntimeError(f"More was answered with {page.short()}")
        presses.append(page.at - started)
        card = page.body
        rows += page_rows(card)
    raise RuntimeError("More never reached a last page")


def page_rows(body: dict[str, Any]) -> Rows:
    """REPOSITORY, TAG, IMAGE ID of the table rows on one page (as the terminal would show it)."""
    text = render(Message(text="", blocks=body.get("blocks") or []))
    lines = text.split("REPOSITORY", 1)[1].splitlines()[1:] if "REPOSITORY" in text else []
    found: Rows = Counter()
    for line in lines:
        cells = line.split()
        if len(cells) >= 3 and cells[0].startswith(PREFIX):
            found[(cells[0], cells[1], cells[2])] += 1
    return found
