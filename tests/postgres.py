"""A real PostgreSQL server for the state-store tests: initdb in a temp dir, loopback only."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def ensure_postgres() -> Path:
    """The server's bin dir, installing Debian's postgresql with apt when it is missing (root only)."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "postgresql"], check=True, env=env)
        bin_dir = _bin_dir()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL's initdb is still missing after apt-get install postgresql")
    return bin_dir


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Postgres:
    """postgres refuses to run as root, so it runs as the `postgres` user the package creates."""

    def __init__(self) -> None:
        self.bin = ensure_postgres()
        self.root = Path(tempfile.mkdtemp(prefix="dbot-pg-"))
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def _as_postgres(self, *cmd: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else list(cmd)

    def start(self) -> str:
        data = self.root / "data"
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        subprocess.run(
            self._as_postgres(str(self.bin / "initdb"), "-D", str(data), "-U", "dockerbot", "-A", "trust"),
            check=True,
            capture_output=True,
        )
        log = open(self.root / "postgres.log", "wb")  # noqa: SIM115 - the server writes it until stop()
        self.proc = subprocess.Popen(
            self._as_postgres(
                str(self.bin / "postgres"),
                "-D",
                str(data),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-k",
                str(self.root),
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready = subprocess.run(
                [str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)], capture_output=True
            )
            if ready.returncode == 0:
                return f"postgresql+psycopg://dockerbot@127.0.0.1:{self.port}/postgres"
            time.sleep(0.2)
        raise RuntimeError("PostgreSQL did not start:\n" + (self.root / "postgres.log").read_text()[-2000:])

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.root, ignore_errors=True)


def fresh_database(server_url: str) -> str:
    """A new, empty database on the server: its URL."""
    import secrets

    from sqlalchemy import create_engine, text

    name = "t_" + secrets.token_hex(6)
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return server_url.rsplit("/", 1)[0] + "/" + name
