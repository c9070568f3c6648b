"""Figure 4: ack latency of the served bot under load, over HTTP and over Socket Mode.

Each round starts background load just before its burst: a `/docker pull` of the 50 MB image and a
`/docker cleanup now` (policy `unused, grace 0`) confirmed with its button, which removes the images
seeded for it. Then 50 concurrent clients send 200 commands (help and images alternating); each
command's ack time is measured at the client, from just before connecting until the HTTP 200's
status line was read (or from sending the Socket Mode envelope until its ack frame was read), and
each must get a reply on its response_url. Latencies of all
rounds are pooled: one burst of 200 is too few for a steady p99, and it varies a lot between runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from bench import pull, seeding
from bench.figures import Figure, percentile
from bench.harness import World
from bench.slackbot import (
    BotProcess,
    Mode,
    ack_histogram_p,
    burst,
    missing_replies,
    running,
    wait_until,
)
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_requests import find_button

POLICY = "unused, grace 0"
FAKE_SLACK_NICENESS = 10


def mix(count: int) -> list[str]:
    return ["help" if i % 2 else "images" for i in range(count)]


@dataclass
class Round:
    latencies: list[float]
    lost: int
    seconds: float  # the burst, first send to last ack
    pull_end: float  # when the background work ended, from the burst's start
    cleanup_end: float


def one_round(
    world: World, slack: FakeSlack, bot: BotProcess, n: int, commands: int, clients: int, images: int
) -> Round:
    world.cli.quiet("rmi", pull.IMAGE)
    prefix = f"bench-ack-{bot.mode}-{n}/app"
    seeding.load(world.api, prefix, images)
    slack.reset()
    bot.command(f"pull {pull.IMAGE}", f"bg-pull-{n}")
    wait_until(lambda: slack.calls("chat.postMessage"), 30, "the pull's first message")
    bot.command(f'cleanup now --policy "{POLICY}"', f"bg-clean-{n}")
    cards = wait_until(
        lambda: [c for c in slack.calls("response_url") if c.tag == f"bg-clean-{n}"], 60, "the cleanup card"
    )
    button = find_button(cards[0].body.get("blocks") or [], "Confirm")
    if button is None:
        raise RuntimeError(f"the cleanup card has no Confirm button: {cards[0].short(600)}")
    bot.press(button, cards[0].body, f"bg-done-{n}")

    latencies, tags, start, end = burst(bot, mix(commands), f"cmd{n}", clients)
    lost = missing_replies(slack, tags, timeout=120)
    pulled = wait_until(
        lambda: [c for c in slack.calls("chat.update") if "Status:" in str(c.body.get("text"))],
        120,
        "the pull's final message",
    )
    cleaned = wait_until(
        lambda: [c for c in slack.calls("response_url") if c.tag == f"bg-done-{n}"], 300, "the cleanup result"
    )
    if seeding.count_images(world.api, prefix):
        raise RuntimeError("the background cleanup did not remove its images")
    return Round(latencies, len(lost), end - start, pulled[0].at - start, cleaned[0].at - start)


def stand_aside(slack: FakeSlack) -> None:
    """Run the fake Slack's Web API at nice 10: Slack's servers share no CPU with a deployed bot,
    and here the replies they receive during a burst would take it from the bot's front. Threads
    inherit the niceness of the thread that starts them, so this covers each request's thread."""
    thread = slack.web_api_thread
    assert thread is not None and thread.native_id is not None
    os.setpriority(os.PRIO_PROCESS, thread.native_id, FAKE_SLACK_NICENESS)


def _rounds(
    world: World, slack: FakeSlack, mode: Mode, commands: int, clients: int, images: int, rounds: int
) -> tuple[list[Round], float | None]:
    with running(slack, mode, world.tmp / f"ack-{mode}") as bot:
        # A deployed bot is warm: every code path the burst takes (paged listings, file uploads) has run.
        seeding.load(world.api, "bench-ack-warm/app", 60)  # enough rows to page
        _, tags, _, _ = burst(bot, mix(20), "warm", 5)
        missing_replies(slack, tags, timeout=60)
        world.remove_all_images()
        done = [one_round(world, slack, bot, n, commands, clients, images) for n in range(rounds)]
        server_p99 = ack_histogram_p(bot.metrics(), 99)
    return done, server_p99


def run(world: World, mode: Mode, commands: int, clients: int, images: int, rounds: int) -> list[Figure]:
    pull.publish(world)
    with FakeSlack() as slack:
        stand_aside(slack)
        done, server_p99 = _rounds(world, slack, mode, commands, clients, images, rounds)
    latencies = [s for r in done for s in r.latencies]
    lost = sum(r.lost for r in done)
    p50, p99 = percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000
    server = f"≤ {server_p99 * 1000:g} ms" if server_p99 is not None else "n/a"
    rounds_text = "; ".join(
        f"p50 {percentile(r.latencies, 50) * 1000:.0f} / p99 {percentile(r.latencies, 99) * 1000:.0f} ms, "
        f"burst {r.seconds:.2f} s, pull ended {r.pull_end:+.1f} s, cleanup {r.cleanup_end:+.1f} s"
        for r in done
    )
    note = (
        f"{rounds} round{'s' if rounds != 1 else ''} of {commands} commands from {clients} clients, "
        f"each with {images} images to clean up; by round: {rounds_text}; "
        f"the bot's own ack histogram (Bolt middleware to ack) puts p99 {server}"
    )
    print(f"  ack {mode}: p50 {p50:.1f} ms, p99 {p99:.1f} ms, {lost} lost; {note}", flush=True)
    return [
        Figure(f"ack_{mode}_p50_ms", round(p50, 1), "ms", 100, "lower", note),
        Figure(f"ack_{mode}_p99_ms", round(p99, 1), "ms", 100, "lower", "Slack's limit is 3,000 ms"),
        Figure(f"ack_{mode}_replies_missing", lost, "commands", 0, "lower", f"of {commands * rounds}"),
    ]
