"""Child processes and what they leave behind: tracking everything started so it is stopped at exit (or
SIGTERM), SIGTERM-then-SIGKILL, /proc pid helpers, free loopback ports, log tails and unmounting.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol


class _Stoppable(Protocol):
    def stop(self) -> None: ...


# Everything started and not yet stopped; stopped at interpreter exit so no dockerd outlives Python.
_live: list[_Stoppable] = []


@atexit.register
def _stop_all() -> None:
    for obj in reversed(list(_live)):
        with contextlib.suppress(Exception):
            obj.stop()


def _track(obj: _Stoppable) -> None:
    if obj not in _live:
        _live.append(obj)
    # atexit does not run when SIGTERM kills Python with the default action: make SIGTERM an exit
    # (only if nobody has set a handler, and only from the main thread, where signals can be set).
    in_main = threading.current_thread() is threading.main_thread()
    if in_main and signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _exit_on_sigterm)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    sys.exit(128 + signum)


def _untrack(obj: _Stoppable) -> None:
    with contextlib.suppress(ValueError):
        _live.remove(obj)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"(no log at {path})"
    return f"--- last lines of {path} ---\n" + "\n".join(text)


def spawn_logged(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    """A server process of ours in its own session, its output appended to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_ready(
    proc: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    *,
    what: str,
    log: Path,
    stop: Callable[[], None],
    timeout: float,
    poll: float = 0.05,
) -> None:
    """Poll `ready` until it holds; if `proc` exits or time runs out, `stop` and raise with the log."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            why = "exited" if proc.poll() is not None else f"not ready after {timeout:g}s"
            stop()
            raise RuntimeError(f"{what} {why}\n{_tail(log)}")
        time.sleep(poll)


def _pid_alive(pid: int) -> bool:
    """Alive and not a zombie (an unreaped zombie is dead for our purposes)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _pids() -> Iterator[int]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            yield int(entry.name)


def _terminate(proc: subprocess.Popen[bytes] | None, pid: int | None, timeout: float) -> None:
    """SIGTERM, wait up to `timeout`, then SIGKILL; reaps `proc` when it is our child."""
    if pid is not None and _pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            if proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=0.05)
            else:
                time.sleep(0.05)
        if _pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


def _unmount_under(root: Path) -> None:
    """Unmount what dockerd left mounted under root (overlays, netns, the data-root bind), deepest first."""
    prefix = str(root.resolve())
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return
    # /proc/mounts writes spaces etc. as octal escapes (\040).
    points = {ln.split()[1].encode().decode("unicode_escape") for ln in lines if len(ln.split()) > 1}
    ours = [p for p in points if p == prefix or p.startswith(prefix + "/")]
    for mnt in sorted(ours, key=len, reverse=True):
        if subprocess.run(["umount", mnt], capture_output=True).returncode:
            subprocess.run(["umount", "-l", mnt], capture_output=True)
