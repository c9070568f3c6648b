"""The newest Docker Engine Debian offers (docker.io + containerd + docker-cli), unpacked beside the system
engine, for the containerd-image-store leg of the tests.

Sid first; trixie when sid lacks a package or its binaries do not run on this machine's glibc. The
unpacked tree is kept under ENGINE_CACHE, so only the first run downloads (about 57 MB). The system's
runc is used (containerd finds it on PATH).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bot.sandbox.aptfetch import AptState

ENGINE_CACHE = Path.home() / ".cache" / "dockerbot" / "engines"
SUITES = ("sid", "trixie")
PACKAGES = ("docker.io", "containerd", "docker-cli")


@dataclass(frozen=True)
class EngineBinaries:
    """Where one engine's programs are: dockerd, its docker CLI, and dirs put first on dockerd's PATH
    (where it finds containerd and the shim)."""

    dockerd: str
    docker: str
    path: tuple[str, ...] = ()
    label: str = "system"


def _runs(binary: Path) -> str | None:
    """`binary --version`, or None when it does not run here (missing, or a glibc too old)."""
    try:
        done = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _binaries(tree: Path, label: str) -> EngineBinaries:
    return EngineBinaries(
        dockerd=str(tree / "usr/sbin/dockerd"),
        docker=str(tree / "usr/bin/docker"),
        path=(str(tree / "usr/bin"), str(tree / "usr/sbin")),
        label=label,
    )


def _check(tree: Path) -> bool:
    return all(_runs(tree / rel) for rel in ("usr/sbin/dockerd", "usr/bin/containerd", "usr/bin/docker"))


def _cached(cache: Path) -> EngineBinaries | None:
    with contextlib.suppress(OSError, ValueError, KeyError):
        meta = json.loads((cache / "current.json").read_text())
        tree = cache / meta["dir"]
        if _check(tree):
            return _binaries(tree, meta["label"])
    return None


@contextlib.contextmanager
def cache_lock(cache: Path) -> Iterator[None]:
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # two worktrees' test runs must not download into one tree at once
        yield


def fetch_new_engine(cache: Path = ENGINE_CACHE, refresh: bool = False) -> EngineBinaries:
    """The unpacked engine from `cache`, fetching it first when absent (or when `refresh`).

    Raises RuntimeError when no suite offers all three packages in a form that runs here."""
    with cache_lock(cache):
        if not refresh and (found := _cached(cache)) is not None:
            return found
        apt = AptState(cache / "apt", SUITES)
        apt.update()
        problems = []
        for suite in SUITES:
            pins = {pkg: apt.version(pkg, suite) for pkg in PACKAGES}
            if missing := [pkg for pkg, ver in pins.items() if ver is None]:
                problems.append(f"{suite}: no {', '.join(missing)}")
                continue
            label = f"{suite} docker.io {pins['docker.io']}, containerd {pins['containerd']}"
            name = f"{suite}-{pins['docker.io']}-{pins['containerd']}".replace(":", "_").replace("~", "_")
            tree = cache / name
            if not _check(tree):
                tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=cache))
                try:
                    apt.download_and_unpack({k: v for k, v in pins.items() if v}, tmp)
                    if not _check(tmp):
                        problems.append(f"{suite}: its binaries do not run on this machine")
                        continue
                    shutil.rmtree(tree, ignore_errors=True)
                    tmp.rename(tree)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
            (cache / "current.json").write_text(json.dumps({"dir": name, "label": label}) + "\n")
            return _binaries(tree, label)
        raise RuntimeError("no newer Docker Engine from Debian: " + "; ".join(problems))
