"""Debian packages fetched with `apt-get download` through a private apt state and unpacked with
`dpkg-deb -x`: nothing is installed, and the machine's own apt lists and sources are never touched.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

# The mirror and keyring of the machine's own apt sources (/etc/apt/sources.list.d/debian.sources).
MIRROR = "http://deb.debian.org/debian"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


class AptState:
    """A private sources list, lists dir and cache under `root`, naming `suites` of the Debian mirror."""

    def __init__(self, root: Path, suites: tuple[str, ...]) -> None:
        self.root = Path(root)
        self.suites = suites
        self.sources = self.root / "sources.list"

    def _options(self) -> list[str]:
        return [
            f"-oDir::Etc::SourceList={self.sources}",
            "-oDir::Etc::SourceParts=/dev/null",
            f"-oDir::State::Lists={self.root / 'lists'}",
            f"-oDir::Cache={self.root / 'cache'}",
            "-oDir::State::status=/dev/null",  # no installed packages: candidates come from the lists only
            "-oAPT::Sandbox::User=root",  # the files are ours; _apt could not write them
        ]

    def _run(self, tool: str, *args: str, cwd: Path | None = None) -> str:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
        done = subprocess.run(
            [tool, *self._options(), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600
        )
        if done.returncode:
            raise RuntimeError(f"{tool} {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
        return done.stdout

    def update(self) -> None:
        for sub in ("lists/partial", "cache/archives/partial"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        lines = [f"deb [signed-by={KEYRING}] {MIRROR} {suite} main" for suite in self.suites]
        self.sources.write_text("\n".join(lines) + "\n")
        self._run("apt-get", "update")

    def version(self, package: str, suite: str) -> str | None:
        """The version `suite` offers for `package` (after update()), or None."""
        out = self._run("apt-cache", "madison", package)
        for line in out.splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) >= 3 and parts[0] == package and f" {suite}/" in f" {parts[2]}":
                return parts[1]
        return None

    def download_and_unpack(self, pins: dict[str, str], dest: Path) -> None:
        """`apt-get download name=version` for each pin, then `dpkg-deb -x` each into `dest`."""
        debs = self.root / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        for old in debs.glob("*.deb"):
            old.unlink()
        self._run("apt-get", "download", *(f"{name}={ver}" for name, ver in pins.items()), cwd=debs)
        dest.mkdir(parents=True, exist_ok=True)
        for deb in sorted(debs.glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], check=True, capture_output=True)
