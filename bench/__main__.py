"""`python -m bench [--quick] [--only PART,…]`: run the benchmarks, print the table, write results.json."""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import acks, cleanup, fleet, listing, memory, pull, starvation, tags
from bench.figures import Figure, table, write_results
from bench.harness import World
from bench.slackbot import Mode

RESULTS = Path(__file__).resolve().parent / "results.json"
# Figures are reported in this order. Parts run in another: `images` and `tags` last, because emptying
# the engine of its 2,000 tags takes the engine several seconds (10,000 would take minutes: the classic
# store rewrites its whole tag file for each tag removed), and the sandbox's teardown is free.
REPORT_ORDER = (
    "images",
    "tags",
    "pull",
    "cleanup",
    "ack-http",
    "ack-socket",
    "memory",
    "starvation",
    "fleet",
)
RUN_ORDER = ("pull", "cleanup", "memory", "ack-http", "ack-socket", "starvation", "fleet", "images", "tags")


@dataclass(frozen=True)
class Sizes:
    listing: tuple[int, ...]  # tags listed
    listing_reps: int
    pull_rounds: int
    cleanup: int  # images removed
    cleanup_rounds: int
    memory_commands: int
    ack_commands: int
    ack_clients: int
    ack_cleanup_images: int
    ack_rounds: int
    starvation_pulls: int = 50
    starvation_reps: int = 10
    tags: int = 10_000  # tags listed (over a quarter as many images)
    tags_reps: int = 9
    tags_slack_rounds: int = 5
    fleet_rounds: int = 5
    fleet_memory_commands: int = 40


FULL = Sizes(
    listing=(100, 1000, 2000),
    listing_reps=15,
    pull_rounds=5,
    cleanup=1000,
    cleanup_rounds=3,
    memory_commands=1000,
    ack_commands=200,
    ack_clients=50,
    ack_cleanup_images=300,
    ack_rounds=3,
)
QUICK = Sizes(  # smaller, but every ratio is still a median of at least 3 rounds
    listing=(100, 1000, 2000),
    listing_reps=5,
    pull_rounds=3,
    cleanup=100,
    cleanup_rounds=3,
    memory_commands=200,
    ack_commands=200,
    ack_clients=50,
    ack_cleanup_images=100,
    ack_rounds=1,
    tags_reps=3,
    tags_slack_rounds=3,
    fleet_rounds=3,
    fleet_memory_commands=10,
)


def parts(world: World, s: Sizes) -> dict[str, Callable[[], list[Figure]]]:
    def ack(mode: Mode) -> Callable[[], list[Figure]]:
        return lambda: acks.run(
            world, mode, s.ack_commands, s.ack_clients, s.ack_cleanup_images, s.ack_rounds
        )

    return {
        "images": lambda: listing.run(world, s.listing, s.listing_reps),
        "pull": lambda: pull.run(world, s.pull_rounds),
        "cleanup": lambda: cleanup.run(world, s.cleanup, s.cleanup_rounds),
        "memory": lambda: memory.run(world, s.memory_commands),
        "ack-http": ack("http"),
        "ack-socket": ack("socket"),
        "starvation": lambda: starvation.run(world, s.starvation_pulls, s.starvation_reps),
        "tags": lambda: tags.run(world, s.tags, s.tags_reps, s.tags_slack_rounds),
        "fleet": lambda: fleet.run(world, s.fleet_rounds, s.fleet_memory_commands),
    }


def summary(figures: list[Figure], seconds: float) -> str:
    missed = [f for f in figures if not f.met]
    lines = [
        f"{len(figures)} figures in {seconds:.0f} s: {len(figures) - len(missed)} meet their target"
        + (f", {len(missed)} miss it:" if missed else ".")
    ]
    for f in missed:
        lines.append(f"  - {f.name} = {f.value:g} {f.unit}, target {f.target:g} ({f.miss()}): {f.note}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, under a minute")
    parser.add_argument("--only", default="", help=f"comma-separated parts of: {', '.join(REPORT_ORDER)}")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"default {RESULTS}")
    args = parser.parse_args(argv)
    only = {p.strip() for p in args.only.split(",") if p.strip()}
    if only - set(REPORT_ORDER):
        parser.error(f"unknown parts: {', '.join(sorted(only - set(REPORT_ORDER)))}")

    started = time.monotonic()
    results: dict[str, list[Figure]] = {}
    failed: list[str] = []
    print(f"dockerbot bench ({'quick' if args.quick else 'full'}): starting a sandbox engine…", flush=True)
    world = World()
    try:
        print(f"  sandbox up in {time.monotonic() - started:.1f} s at {world.box.docker_host}", flush=True)
        todo = parts(world, QUICK if args.quick else FULL)
        for name in RUN_ORDER:
            if only and name not in only:
                continue
            print(f"[{name}]", flush=True)
            t0 = time.monotonic()
            try:
                world.remove_all_images()  # each part starts from an empty engine
                results[name] = todo[name]()
            except Exception:  # noqa: BLE001 - one broken part must not lose the others' figures
                failed.append(name)
                traceback.print_exc()
            print(f"  ({time.monotonic() - t0:.1f} s)", flush=True)
    finally:
        world.close()

    figures = [f for name in REPORT_ORDER for f in results.get(name, [])]
    print()
    print(table(figures))
    write_results(args.output, figures)
    print()
    print(summary(figures, time.monotonic() - started))
    if failed:
        print(f"Parts that failed (no figures, traceback above): {', '.join(failed)}.")
    print(f"Wrote {args.output}.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
