"""Figure 5: the served bot's resident memory when idle, and its growth over many commands."""

from __future__ import annotations

import time

from bench import seeding
from bench.figures import Figure
from bench.harness import World
from bench.slackbot import burst, missing_replies, running
from tests.fakes.slack import FakeSlack

PREFIX = "bench-mem/app"
IMAGES = 100  # enough for `images` to page and attach the whole table as a file
WARMUP = 50
CLIENTS = 10


def mix(count: int) -> list[str]:
    return ["help" if i % 2 else "images" for i in range(count)]


def run(world: World, commands: int) -> list[Figure]:
    seeding.load(world.api, PREFIX, IMAGES)
    with FakeSlack() as slack, running(slack, "http", world.tmp / "memory") as bot:
        started = bot.rss_mb()
        _, tags, _, _ = burst(bot, mix(WARMUP), "warm", CLIENTS)
        lost = missing_replies(slack, tags, timeout=60)
        time.sleep(0.5)  # replies are out; let worker threads settle
        idle, each = bot.rss_mb(), bot.memory_by_process()
        _, tags, t0, t1 = burst(bot, mix(commands), "load", CLIENTS)
        lost |= missing_replies(slack, tags, timeout=120)
        time.sleep(0.5)
        after, each_after = bot.rss_mb(), bot.memory_by_process()
    growth = (after - idle) / idle * 100
    parts = ", ".join(f"{role} {rss:.0f}" for role, (rss, _) in each.items())
    pss = sum(p for _, p in each.values())
    note = (
        f"VmRSS (all the bot's processes) {started:.0f} MB at start, {idle:.0f} MB after {WARMUP} "
        f"warm-up commands ({parts}; PSS {pss:.0f} MB), {after:.0f} MB after {commands} more "
        f"({', '.join(f'{role} {rss:.0f}' for role, (rss, _) in each_after.items())}; help/images "
        f"alternating, {CLIENTS} clients, {commands / (t1 - t0):.0f} acks/s) over {IMAGES} images; "
        f"{len(lost)} replies missing"
    )
    print(f"  memory: {note}", flush=True)
    return [
        Figure("rss_idle_mb", round(idle, 1), "MB", 150, "lower", f"VmRSS summed: {parts}"),
        *(
            Figure(f"rss_idle_{role.replace(' ', '_')}_mb", round(rss, 1), "MB", None, "lower", "VmRSS")
            for role, (rss, _) in each.items()
        ),
        Figure("pss_idle_mb", round(pss, 1), "MB", None, "lower", "PSS summed: shared pages split"),
        Figure(f"rss_growth_after_{commands}_pct", round(growth, 1), "%", 10, "lower", note),
    ]
