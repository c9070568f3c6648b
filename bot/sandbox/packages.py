"""What the sandbox runs (dockerd, docker-registry, a static busybox, openssl, haproxy, sshd) and
installing it with apt-get when missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Literal

DOCKERD = "/usr/sbin/dockerd"
REGISTRY_BIN = "/usr/bin/docker-registry"
SSHD = "/usr/sbin/sshd"
BUSYBOX = Path("/bin/busybox")
_PACKAGES = ("docker.io", "docker-registry", "busybox-static")


def _is_static_elf(path: Path) -> bool:
    """True for an ELF without a PT_INTERP header: the only kind that runs in a FROM-scratch image."""
    try:
        with path.open("rb") as f:
            data = f.read(65536)
    except OSError:
        return False
    if data[:4] != b"\x7fELF":
        return False
    is64 = data[4] == 2
    order: Literal["little", "big"] = "little" if data[5] == 1 else "big"

    def num(off: int, size: int) -> int:
        return int.from_bytes(data[off : off + size], order)

    if is64:
        phoff, phentsize, phnum = num(0x20, 8), num(0x36, 2), num(0x38, 2)
    else:
        phoff, phentsize, phnum = num(0x1C, 4), num(0x2A, 2), num(0x2C, 2)
    return all(num(phoff + i * phentsize, 4) != 3 for i in range(phnum))  # 3 = PT_INTERP


def _missing_packages() -> list[str]:
    missing = []
    if not (Path(DOCKERD).exists() and (shutil.which("docker") or Path("/usr/bin/docker").exists())):
        missing.append("docker.io")
    if not Path(REGISTRY_BIN).exists():
        missing.append("docker-registry")
    if not shutil.which("openssl"):  # certificates for the Hub proxy and TLS engines
        missing.append("openssl")
    if not _is_static_elf(BUSYBOX):  # Debian's plain `busybox` is dynamic: it would not run FROM scratch
        missing.append("busybox-static")
    if not shutil.which("haproxy"):  # the least-privilege socket proxy of deploy/, tested for real
        missing.append("haproxy")
    if not Path(SSHD).exists():  # ssh:// hosts, tested against a private sshd (tests/fakes/sshd.py)
        missing.append("openssh-server")
    return missing


def ensure_packages() -> None:
    """Install what `_missing_packages` finds missing with apt-get (root only)."""
    missing = _missing_packages()
    if not missing:
        return
    if os.geteuid() != 0:
        raise RuntimeError(
            f"missing packages: {', '.join(missing)}; as root run `apt-get install -y {' '.join(missing)}`"
            " or `python -m bot.sandbox install`"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update"], check=True, env=env)
    # Debian's own switch (ssh.service and /etc/init.d/ssh honour it): installing openssh-server must
    # not start a system sshd on port 22; the tests run their own on a private port.
    marker = Path("/etc/ssh/sshd_not_to_be_run")
    hold_sshd = "openssh-server" in missing and not marker.exists()
    if hold_sshd:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    try:
        subprocess.run(["apt-get", "install", "-y", *_PACKAGES, *missing], check=True, env=env)
    finally:
        if hold_sshd:
            marker.unlink(missing_ok=True)
    if still := _missing_packages():
        raise RuntimeError(f"still missing after apt-get install: {', '.join(still)}")
