"""`python -m bot.sandbox up` (a sandbox until Ctrl-C / SIGTERM) or `install` (the packages it needs)."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import bot.sandbox as package
from bot.sandbox import deploytools
from bot.sandbox.newengine import fetch_new_engine
from bot.sandbox.packages import ensure_packages
from bot.sandbox.processes import _exit_on_sigterm
from bot.sandbox.sandbox import Sandbox
from bot.sandbox.seeding import SEED_CACHE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bot.sandbox",
        description=package.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start a seeded sandbox and keep it until Ctrl-C / SIGTERM")
    up.add_argument("--root", type=Path, help="directory to use (kept at exit); default: a new temp dir")
    up.add_argument("--no-seed", action="store_true", help="do not push the seed images to the mirror")
    up.add_argument(
        "--no-seed-cache", action="store_true", help=f"build the seed images even if {SEED_CACHE} has them"
    )
    sub.add_parser("install", help="apt-get install the packages the sandbox needs")
    sub.add_parser(
        "fetch-engine", help="fetch and unpack the newest Debian engine the tests also run (containerd store)"
    )
    sub.add_parser("fetch-tools", help="fetch helm and docker compose for the deploy tests (if not on PATH)")
    args = parser.parse_args(argv)

    if args.cmd == "install":
        ensure_packages()
        return 0
    if args.cmd == "fetch-tools":
        print(f"helm: {deploytools.helm()}\ncompose: {' '.join(deploytools.compose())}", flush=True)
        return 0
    if args.cmd == "fetch-engine":
        binaries = fetch_new_engine()
        print(f"{binaries.label}: {binaries.dockerd}", flush=True)
        return 0

    # SIGTERM becomes SystemExit, so `finally` tears down as on Ctrl-C.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    sandbox = Sandbox(args.root, seed_cache=not args.no_seed_cache)
    try:
        sandbox.start(seed=not args.no_seed)
        print(f"DOCKER_HOST={sandbox.docker_host}", flush=True)
        cached = " (from cache)" if sandbox.seeded_from_cache else ""
        print(
            f"# mirror {sandbox.registry.url}, logs under {sandbox.root}, "
            f"seeded in {sandbox.seed_seconds or 0:.1f}s{cached}; Ctrl-C to stop",
            file=sys.stderr,
            flush=True,
        )
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
