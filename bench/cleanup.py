"""Figure 3: removing N unused images with `cleanup now` + Confirm vs `docker image prune -a -f`,
and vs `docker rmi` of the same N tags (one CLI call, which deletes them one API call each).

All three sides get the same N freshly loaded images (nothing else on the engine), in rotating
order round by round, since the engine's own delete speed drifts. The bot's time is its whole
work, the plan (`cleanup now`, which posts the card) plus the run (Confirm), without the human's
pause in between; both go through the terminal adapter of a warm bot. Prune is one engine call
that loops inside the engine; the bot, like `docker rmi`, removes exactly the images it showed,
one API call each, so `docker rmi` is the floor the engine's API sets for that.
"""

from __future__ import annotations

from bench import seeding
from bench.figures import Figure, median, timed
from bench.harness import WarmBot, World

PREFIX = "bench-gc/app"
POLICY = "unused, grace 0"  # every image no container uses, however new


def bot_cleanup(world: World, bot: WarmBot, count: int) -> tuple[float, float]:
    """(plan seconds, run seconds) for one `cleanup now` + Confirm of `count` fresh images."""
    seeding.load(world.api, PREFIX, count)
    said: list[str] = []
    plan_s = timed(lambda: said.append(bot.say(f'/docker cleanup now --policy "{POLICY}"')))
    if "[Confirm]" not in said[-1]:
        raise RuntimeError(f"no confirmation card:\n{said[-1][-800:]}")
    run_s = timed(lambda: said.append(bot.say("confirm")))
    left = seeding.count_images(world.api, PREFIX)
    if left:
        raise RuntimeError(f"the bot's cleanup left {left} of {count} images:\n{said[-1][-1500:]}")
    return plan_s, run_s


def cli_prune(world: World, count: int) -> float:
    seeding.load(world.api, PREFIX, count)
    seconds = world.cli.run("image", "prune", "-a", "-f")
    left = seeding.count_images(world.api, PREFIX)
    if left:
        raise RuntimeError(f"docker image prune -a -f left {left} of {count} images")
    return seconds


def cli_rmi(world: World, count: int) -> float:
    seeding.load(world.api, PREFIX, count)
    tags = [t for i in world.api.images() for t in i.get("RepoTags") or [] if t.startswith(PREFIX)]
    seconds = world.cli.run("rmi", *tags)
    left = seeding.count_images(world.api, PREFIX)
    if left:
        raise RuntimeError(f"docker rmi left {left} of {count} images")
    return seconds


def run(world: World, count: int, rounds: int) -> list[Figure]:
    bot = world.warm_bot()
    bot.say("/docker images")  # warm: engine connection, imports
    plans, runs, prunes, rmis = [], [], [], []

    def bot_side() -> None:
        plan_s, run_s = bot_cleanup(world, bot, count)
        plans.append(plan_s)
        runs.append(run_s)

    sides = [
        bot_side,
        lambda: prunes.append(cli_prune(world, count)),
        lambda: rmis.append(cli_rmi(world, count)),
    ]
    for side in sides:  # a warm-up round, not counted: the first removals after start-up are slower
        side()
    for figures in (plans, runs, prunes, rmis):
        figures.clear()
    for i in range(rounds):
        for side in sides[i % 3 :] + sides[: i % 3]:
            side()
    totals = [p + r for p, r in zip(plans, runs, strict=True)]
    bot_s, prune_s, rmi_s = median(totals), median(prunes), median(rmis)
    note = (
        f"bot {bot_s:.2f} s (plan {median(plans):.2f} s + run {median(runs):.2f} s) vs prune {prune_s:.2f} s "
        f"and docker rmi {rmi_s:.2f} s for {count} images, medians of {rounds} (bot "
        f"{', '.join(f'{t:.1f}' for t in totals)}; prune {', '.join(f'{t:.1f}' for t in prunes)}; rmi "
        f"{', '.join(f'{t:.1f}' for t in rmis)}); seeded by {seeding.METHOD}, one tag each"
    )
    print(f"  cleanup: {note}", flush=True)
    return [
        # Information only: prune removes whatever is unused when it runs, the bot exactly what it
        # previewed (issue 17's decision), so `docker rmi` of the same tags is the reference.
        Figure(f"cleanup_{count}_vs_prune", round(bot_s / prune_s, 2), "ratio", None, "lower", note),
        Figure(
            f"cleanup_{count}_vs_rmi",
            round(bot_s / rmi_s, 2),
            "ratio",
            1.1,
            "lower",
            f"docker rmi of the same tags takes {rmi_s / prune_s:.2f}× prune's time: the engine API's "
            "floor for removing images one call each",
        ),
    ]
