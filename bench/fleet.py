"""Fleet figures (issue 17): `images` and `report now` over 100 configured hosts, and a fleet cleanup.

The hosts are the sandbox's real engine, each reached through its own loopback TCP proxy
(tests/fakes/latency_proxy.py, in a process of its own) that delays every request and response:
95 live hosts with round trips spread over 10–300 ms, and 5 that accept connections and never
answer. `DOCKERBOT_HOST_TIMEOUT` is 5 s.

- A host's own time: the command on that host alone (`--host hNNN`), for the live hosts with the
  longest round trips (the slowest ones; a host's time is its round trips plus the engine's work).
- The 95 live hosts at once (`--host h000,h001,…`): wall time minus the slowest host's own time.
- `--host all` (the 5 dead ones too): wall time minus the host timeout, which the dead ones cost.
- The served bot with the fake Slack: each reply to `--host all` must pass Slack's rules at 100 rows
  (paged or attached as a file), and its resident memory over many fleet commands.
- A cleanup schedule over `--host all`, run now: one summary, one row per host, and its time.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import yaml
from slack_sdk import WebClient

from bench import seeding
from bench.figures import Figure, median, timed
from bench.harness import WarmBot, World
from bench.slackbot import BOT_TOKEN, running, wait_until
from bot.jobs.scheduler import Scheduler
from bot.slack.reply import SlackPoster
from bot.state.delivery import Delivery
from tests.fakes.latency_proxy import ProxyProcess
from tests.fakes.slack import FakeSlack

HOSTS = 100
DEAD = 5
RTT_RANGE = (0.010, 0.300)  # seconds added to each request's round trip
HOST_TIMEOUT = 5.0
SLOWEST = 5  # live hosts whose own time is measured: those with the longest round trips
IMAGES = 10  # on the engine, so every host's table has rows
PREFIX = "bench-fleet/app"
COMMANDS = ("images", "report now")
CHANNEL = "CFLEET"


def plan_hosts() -> dict[str, float | None]:
    """host name -> round trip (None: dead), the dead ones and the round trips shuffled among names."""
    live = HOSTS - DEAD
    low, high = RTT_RANGE
    rtts: list[float | None] = [low + (high - low) * i / (live - 1) for i in range(live)]
    rtts += [None] * DEAD
    random.Random(17).shuffle(rtts)
    return {f"h{i:03d}": rtt for i, rtt in enumerate(rtts)}


def answered(out: str, live: int, asked: int) -> None:
    if f"{live} of {asked} hosts answered" not in out:
        raise RuntimeError(f"not every live host answered:\n{out[-1500:]}")


def run(world: World, rounds: int, memory_commands: int) -> list[Figure]:
    seeding.load(world.api, PREFIX, IMAGES)
    plan = plan_hosts()
    live = [name for name, rtt in plan.items() if rtt is not None]
    dead = [name for name, rtt in plan.items() if rtt is None]
    slowest = sorted(live, key=lambda name: plan[name] or 0)[-SLOWEST:]
    proxies = ProxyProcess(str(world.box.engine.socket), list(plan.values()))
    try:
        config = world.tmp / "fleet.yml"
        hosts = {name: {"url": e.url} for name, e in zip(plan, proxies.endpoints, strict=True)}
        config.write_text(yaml.safe_dump({"hosts": hosts}, sort_keys=False))
        # The bot's own docker timeout (60 s), not the bench's 600: it is what a dead host's thread waits.
        bot = world.warm_bot(config=config, host_timeout=HOST_TIMEOUT, docker_timeout=60)
        figures: list[Figure] = []
        for command in COMMANDS:
            figures += _command(bot, command, plan, live, dead, slowest, rounds)
        figures += _cleanup_schedule(world, bot, len(live), slowest[-1], rounds)
        figures += _served(world, config, memory_commands)
        return figures
    finally:
        proxies.close()


def _command(
    bot: WarmBot,
    command: str,
    plan: dict[str, float | None],
    live: list[str],
    dead: list[str],
    slowest: list[str],
    rounds: int,
) -> list[Figure]:
    name = command.split()[0]
    every_live = ",".join(live)
    first = timed(lambda: answered(bot.say(f"/docker {command} --host {every_live}"), len(live), len(live)))
    own = {}
    for host in slowest:  # each alone, connections warm
        bot.say(f"/docker {command} --host {host}")
        own[host] = median(
            [timed(lambda h=host: bot.say(f"/docker {command} --host {h}")) for _ in range(rounds)]
        )
    worst = max(own, key=own.__getitem__)
    fleet_live = [
        timed(lambda: answered(bot.say(f"/docker {command} --host {every_live}"), len(live), len(live)))
        for _ in range(rounds)
    ]

    def all_hosts() -> None:
        out = bot.say(f"/docker {command} --host all")
        answered(out, len(live), HOSTS)
        for host in dead:
            if f"{host}: did not answer within {HOST_TIMEOUT:g} s" not in out:
                raise RuntimeError(f"{host} is not reported as not answering:\n{out[-1500:]}")

    fleet_all = [timed(all_hosts) for _ in range(rounds)]
    live_s, all_s = median(fleet_live), median(fleet_all)
    over = round(live_s - own[worst], 3)
    note = (
        f"{len(live)} live hosts {live_s:.2f} s (median of {rounds}; first, connecting: {first:.2f} s) vs "
        f"the slowest alone, {worst} ({(plan[worst] or 0) * 1000:.0f} ms round trips): {own[worst]:.2f} s "
        f"(of the {SLOWEST} with the longest round trips: "
        + ", ".join(f"{own[h]:.2f}" for h in slowest)
        + ")"
    )
    print(f"  {command}: {note}; all {HOSTS} (5 dead): {all_s:.2f} s", flush=True)
    return [
        Figure(f"fleet_{name}_{len(live)}_live_over_slowest_host_s", over, "s", 0.5, "lower", note),
        Figure(
            f"fleet_{name}_{HOSTS}_with_{len(dead)}_dead_over_host_timeout_s",
            round(all_s - HOST_TIMEOUT, 3),
            "s",
            0.5,
            "lower",
            f"--host all: {all_s:.2f} s (median of {rounds}), DOCKERBOT_HOST_TIMEOUT {HOST_TIMEOUT:g} s",
        ),
    ]


def _cleanup_schedule(world: World, bot: WarmBot, live: int, slowest: str, rounds: int) -> list[Figure]:
    """A cleanup schedule over `--host all`, run now (as its cron would), posted to the fake Slack;
    against the same schedule on the slowest live host alone. The policy is the default (dangling
    images, of which there are none): every host plans and removes nothing, since all 100 hosts are
    one engine, and the first host's removals would leave nothing for the others."""
    services = bot.services
    with FakeSlack() as slack:
        client = WebClient(token=BOT_TOKEN, base_url=slack.api_url)
        scheduler = Scheduler(services, Delivery(services.store.engine, SlackPoster(client)))
        scheduler.start(paused=True)
        services.scheduler = scheduler
        try:
            bot.say(f'/docker cleanup schedule "0 3 * * 0" --host {slowest} --channel {CHANNEL}')
            made = bot.say(f'/docker cleanup schedule "0 3 * * 0" --host all --channel {CHANNEL}')
            one, every = (s.id for s in scheduler.list("cleanup"))
            scheduler.run(one)  # warm
            own = median([timed(lambda: scheduler.run(one)) for _ in range(rounds)])
            posted = len(slack.calls("chat.postMessage"))
            times = [timed(lambda: scheduler.run(every)) for _ in range(rounds)]
            posts = wait_until(
                lambda: slack.calls("chat.postMessage")[posted:][rounds - 1 :], 30, "the cleanup summaries"
            )
        finally:
            services.scheduler = None
            scheduler.shutdown(wait=False)
        if slack.violations:
            raise RuntimeError(f"a summary broke Slack's rules: {slack.violations}")
    seconds = median(times)
    print(f"  cleanup schedule: {seconds:.2f} s on {HOSTS} hosts, {own:.2f} s on {slowest} alone", flush=True)
    post = posts[-1]
    text = str(post.body.get("text", ""))
    table = "\n".join(str(b.get("text", {}).get("text", "")) for b in _as_list(post.body.get("blocks") or []))
    rows = [line.strip("`").split()[0] for line in table.splitlines() if line.strip("`")[:1] == "h"]
    if f"Scheduled cleanup on {HOSTS} hosts: {live} ok, {HOSTS - live} failed" not in text:
        raise RuntimeError(f"unexpected cleanup summary: {text}\n{made}")
    if sorted(set(rows)) != [f"h{i:03d}" for i in range(HOSTS)]:
        raise RuntimeError(f"the summary does not have one row per host: {len(set(rows))} hosts")
    # Every host is pinged first; each one's run starts when its ping answers, and the dead ones
    # are given up on after the host timeout: the floor is whichever of the two is longer.
    floor = max(HOST_TIMEOUT, own)
    note = (
        f"{seconds:.2f} s (median of {rounds}) vs the longer of the host timeout ({HOST_TIMEOUT:g} s, the "
        f"dead hosts) and {slowest} alone ({own:.2f} s); one summary per run, {len(set(rows))} host rows: "
        f"{text}"
    )
    name = f"fleet_cleanup_schedule_{HOSTS}_over_floor_s"
    return [Figure(name, round(seconds - floor, 3), "s", 0.5, "lower", note)]


def _as_list(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):  # form-encoded Web API calls carry blocks as JSON text
        return list(json.loads(value))
    return list(value)


def _served(world: World, config: Path, commands: int) -> list[Figure]:
    """`python -m bot serve` with the fake Slack: each fleet reply passes Slack's rules; its memory."""
    env = {"DOCKERBOT_CONFIG": str(config), "DOCKERBOT_HOST_TIMEOUT": f"{HOST_TIMEOUT:g}"}
    with FakeSlack() as slack, running(slack, "http", world.tmp / "fleet-served", env) as served:
        started = served.rss_mb()
        seen: list[str] = []

        def ask(text: str, tag: str) -> None:
            served.command(text, tag)
            [reply] = slack.wait_for("response_url", lambda c: c.tag == tag, timeout=60)
            body = reply.body
            if "95 of 100 hosts answered" not in str(body.get("text", "")):
                raise RuntimeError(f"/docker {text}: unexpected reply {reply.short(600)}")
            seen.append(tag)

        for i, command in enumerate(COMMANDS):
            ask(f"{command} --host all", f"warm-{i}")
        idle = served.rss_mb()
        uploads = len(slack.calls("files.completeUploadExternal", ok=True))
        for i in range(commands):
            ask(f"{COMMANDS[i % 2]} --host all", f"load-{i}")
        time.sleep(0.5)
        after = served.rss_mb()
        if slack.violations:
            raise RuntimeError(f"a fleet reply broke Slack's rules: {slack.violations}")
        if uploads < len(COMMANDS):
            raise RuntimeError("the full 100-host text was not attached as a file")
        one = slack.calls("response_url")[-1]
        reply_blocks = len(_as_list(one.body.get("blocks") or []))
    growth = (after - idle) / idle * 100
    note = (
        f"VmRSS of the served bot {started:.0f} MB at start, {idle:.0f} MB after one of each, {after:.0f} MB "
        f"after {commands} more `--host all` (images/report alternating, one at a time); every reply "
        f"passed the fake Slack's rules, {reply_blocks} blocks with the full text as a file"
    )
    print(f"  served: {note}", flush=True)
    return [Figure(f"fleet_rss_growth_after_{commands}_pct", round(growth, 1), "%", 10, "lower", note)]
