"""Figure 2: pulling a ~50 MB image from the local registry (the engine's Hub mirror), bot vs CLI.

The bot's time is measured three ways each round, all from an engine without the image:
- in the terminal adapter of a warm bot, when the engine pull ends (PullRegistry.pull returns), and end to
  end, when the final message is printed: the figure;
- in the served bot (`python -m bot serve`, HTTP), from sending the signed `/docker pull` to the final
  chat.update reaching the fake Slack. Slack allows about one update a second per message, so there
  the final update waits out the rest of a second after the last progress update, if there was one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.figures import Figure, median
from bench.harness import World
from bench.slackbot import BotProcess, burst, missing_replies, running, wait_until
from bot.engine.pulling import PullRegistry
from bot.sandbox import push_image
from tests.fakes.slack import FakeSlack

IMAGE = "bench/big:latest"  # a Hub-style name: the engine fetches it through its mirror
SIZE_MB = 50


def publish(world: World) -> float:
    """Build the image (random bytes, so it does not compress) and push it to the registry, once."""
    if "pull image" not in world.prepared:
        started = time.perf_counter()
        push_image(world.box.engine, world.box.registry, IMAGE, {}, big_file_mb=SIZE_MB)
        world.prepared["pull image"] = time.perf_counter() - started
    return world.prepared["pull image"]


@contextmanager
def engine_pull_ends() -> Iterator[list[float]]:
    """perf_counter() of every return from PullRegistry.pull while inside (bench-only instrumentation;
    the registry is the warm bot's Services.pulls, so the class is patched)."""
    marks: list[float] = []
    original = PullRegistry.pull

    def pull(*args: Any, **kwargs: Any) -> Any:
        try:
            return original(*args, **kwargs)
        finally:
            marks.append(time.perf_counter())

    PullRegistry.pull = pull  # type: ignore[method-assign]
    try:
        yield marks
    finally:
        PullRegistry.pull = original  # type: ignore[method-assign]


def slack_pull(slack: FakeSlack, bot: BotProcess, n: int) -> float:
    """Seconds from sending `/docker pull` to the final chat.update arriving."""
    slack.reset()
    started = time.time()
    bot.command(f"pull {IMAGE}", f"pull-{n}")
    final = wait_until(
        lambda: [c for c in slack.calls("chat.update") if "Status:" in str(c.body.get("text"))],
        120,
        "the pull's final message",
    )
    if "Downloaded newer image" not in str(final[0].body.get("text")):
        raise RuntimeError(f"the served bot's pull did not download the image: {final[0].short(400)}")
    return final[0].at - started


def run(world: World, rounds: int) -> list[Figure]:
    built = publish(world)
    bot = world.warm_bot()
    bot.say("/docker images")  # warm: engine connection, imports
    e2e, engine, cli, slack_e2e = [], [], [], []
    with (
        engine_pull_ends() as marks,
        FakeSlack() as slack,
        running(slack, "http", world.tmp / "pull") as served,
    ):
        _, tags, _, _ = burst(served, ["help", "images"], "warm", 2)
        missing_replies(slack, tags, timeout=30)
        for n in range(rounds):  # each side in turn, each from an engine without the image
            world.cli.quiet("rmi", IMAGE)
            started = time.perf_counter()
            out = bot.say(f"/docker pull {IMAGE}")
            e2e.append(time.perf_counter() - started)
            engine.append(marks[-1] - started)
            if "Status: Downloaded newer image" not in out:
                raise RuntimeError(f"the bot's pull did not download the image:\n{out[-800:]}")
            world.cli.quiet("rmi", IMAGE)
            cli.append(world.cli.run("pull", IMAGE))
            world.cli.quiet("rmi", IMAGE)
            slack_e2e.append(slack_pull(slack, served, n))
    world.cli.quiet("rmi", IMAGE)
    e2e_s, engine_s, cli_s, slack_s = median(e2e), median(engine), median(cli), median(slack_e2e)

    def listed(values: list[float]) -> str:
        return ", ".join(f"{v:.2f}" for v in values)

    note = (
        f"terminal end to end {e2e_s:.2f} s (engine pull done at {engine_s:.2f} s) vs docker pull "
        f"{cli_s:.2f} s; medians of {rounds} (end to end {listed(e2e)}; engine {listed(engine)}; CLI "
        f"{listed(cli)}); image built and pushed in {built:.1f} s"
    )
    slack_note = (
        f"served bot over HTTP, command to final chat.update: {slack_s:.2f} s ({listed(slack_e2e)}); "
        "the final update waits out the second since the last progress update, if any (Slack's rate limit)"
    )
    print(f"  pull: {note}\n  pull: {slack_note}", flush=True)
    return [
        Figure("pull_50mb_vs_cli", round(e2e_s / cli_s, 2), "ratio", 1.1, "lower", note),
        Figure(
            "pull_50mb_engine_vs_cli",
            round(engine_s / cli_s, 2),
            "ratio",
            1.1,
            "lower",
            "the engine pull inside the bot (until PullRegistry.pull returned), without the final message",
        ),
        Figure("pull_50mb_slack_vs_cli", round(slack_s / cli_s, 2), "ratio", 1.1, "lower", slack_note),
    ]
