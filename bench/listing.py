"""Figure 1: `/docker images` in a warm bot vs `docker images`, at 100 / 1,000 / 2,000 tags."""

from __future__ import annotations

from bench import seeding
from bench.figures import Figure, median, timed
from bench.harness import WarmBot, World

PREFIX = "bench-ls/app"
TAGS_PER_IMAGE = 4  # 2,000 tags over 500 distinct images


def bot_vs_cli(world: World, bot: WarmBot, images: int, reps: int) -> tuple[float, float]:
    """Median milliseconds of the warm bot's `/docker images` and of `docker images`, over `reps`
    interleaved rounds (drift in the engine's speed hits both sides alike)."""
    first = bot.say("/docker images")  # also the warm-up: connections, imports, caches
    if f"{images} images," not in first:
        raise RuntimeError(f"the bot did not list {images} images:\n{first[-500:]}")
    world.cli.run("images")
    bot_times, cli_times = [], []
    for _ in range(reps):
        bot_times.append(timed(lambda: bot.say("/docker images")))
        cli_times.append(world.cli.run("images"))
    return median(bot_times) * 1000, median(cli_times) * 1000


def run(world: World, sizes: tuple[int, ...], reps: int) -> list[Figure]:
    bot = world.warm_bot()
    figures = []
    have = 0
    for size in sizes:
        images = size // TAGS_PER_IMAGE
        seed = seeding.load(world.api, PREFIX, images - have, TAGS_PER_IMAGE, start=have)
        have = images
        bot_ms, cli_ms = bot_vs_cli(world, bot, images, reps)
        note = (
            f"bot {bot_ms:.0f} ms vs CLI {cli_ms:.0f} ms (medians of {reps}); {images} images x "
            f"{TAGS_PER_IMAGE} tags seeded in {seed.seconds:.1f} s by {seed.method}"
        )
        ratio = round(bot_ms / cli_ms, 2)
        figures.append(Figure(f"images_{size}_vs_cli", ratio, "ratio", 1.2, "lower", note))
        print(f"  images {size}: {note}", flush=True)
    return figures
