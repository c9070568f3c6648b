"""Figure 5: `images` while 50 pulls hang on a registry that never answers (issue 15, item 4).

The served bot (HTTP mode, 32 workers, default caps) on the sandbox engine. First `images` is timed
alone (from sending the signed command to its answer reaching the fake Slack's response_url), then
50 people each send `/docker pull` of an image on a registry that accepts connections and never
answers, and `images` is timed again while those pulls hang. Without caps the pulls took every worker
and `images` waited until they timed out; with them, the pulls past a cap are refused at once and the
workers the caps leave answer reads as usual.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from bench.figures import Figure, median
from bench.harness import World
from bench.slackbot import CHANNEL, SECRET, running, wait_until
from tests.fakes.registry import FakeRegistry
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_requests import post_signed, slash_command_body


def ask(slack: FakeSlack, url: str, text: str, user: str, tag: str, timeout: float = 120) -> float:
    """Seconds from sending `/docker text` to its first answer on the response_url."""
    body = slash_command_body(text, user_id=user, channel_id=CHANNEL, response_url=slack.response_url(tag))
    started = time.perf_counter()
    status, answer = post_signed(url, body, SECRET, timeout=30)
    if status != 200:
        raise RuntimeError(f"/docker {text}: HTTP {status} {answer[:200]}")
    slack.wait_for("response_url", lambda c: c.tag == tag, timeout=timeout)
    return time.perf_counter() - started


def run(world: World, pulls: int, reps: int) -> list[Figure]:
    registry = FakeRegistry(world.box.registry.address, stall_manifests=True).start()
    world.cli.quiet("pull", "busybox")  # something for `images` to list
    env = {"DOCKERBOT_DEFAULT_ROLE": "operator"}  # each of the 50 may pull
    try:
        with FakeSlack() as slack, running(slack, "http", world.tmp / "starvation", env) as bot:
            alone = [ask(slack, bot.url, "images", "UREADER", f"alone-{i}") for i in range(reps + 1)][1:]
            image = f"{registry.address}/library/never"

            def pull(i: int) -> None:
                body = slash_command_body(
                    f"pull {image}:{i}",
                    user_id=f"UPULL{i:02d}",
                    channel_id=CHANNEL,
                    response_url=slack.response_url(f"pull-{i}"),
                )
                post_signed(bot.url, body, SECRET, timeout=30)

            with ThreadPoolExecutor(8) as senders:
                list(senders.map(pull, range(pulls)))
            wait_until(lambda: len(registry.requests("manifests")) >= 1, 30, "a pull reaching the registry")
            time.sleep(1)  # every pull the caps let through is waiting on the registry by now
            hanging = len({p for _, p, _ in registry.requests("manifests")})
            refused = len([c for c in slack.calls("response_url") if c.tag.startswith("pull-")])
            busy = [ask(slack, bot.url, "images", "UREADER", f"busy-{i}") for i in range(reps)]
    finally:
        registry.stop()
    base, loaded = median(alone) * 1000, median(busy) * 1000
    return [
        Figure("images alone (median)", round(base, 1), "ms", 500, "lower", f"{reps} runs"),
        Figure(
            f"images while {pulls} pulls hang (median)",
            round(loaded, 1),
            "ms",
            round(max(2 * base, base + 100), 1),
            "lower",
            f"{hanging} pulls waiting on the registry, {refused} refused by the caps; target: twice alone",
        ),
    ]
