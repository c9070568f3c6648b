"""A private OpenSSH server in front of a sandbox engine, for testing `ssh://` Docker hosts for real.

`Sshd(root, docker_host)` runs `/usr/sbin/sshd -D -e -f root/sshd_config` on 127.0.0.1:<free port> with
its own ed25519 host key, one authorized client key (made fresh in root), `PasswordAuthentication no`,
`StrictModes no`, `UsePAM no` and `SetEnv DOCKER_HOST=<docker_host>` (sshd_config SetEnv: OpenSSH 8.7+),
so the `docker system dial-stdio` that docker-py runs in each session reaches the sandbox engine. Nothing
under /etc/ssh or /root/.ssh is written; the only thing made outside root is /run/sshd, the empty
privilege-separation directory sshd insists on (Debian's unit makes it at boot; made here if missing).

The client side is contained too. bot/engine/hosts.py lets docker-py use paramiko (not the system `ssh`), and
paramiko takes the key from `~/.ssh/config` (IdentityFile) and trusts only `~/.ssh/known_hosts`
(RejectPolicy) — so `sshd.home` is a HOME for the client: `.ssh/config` names the key for 127.0.0.1
(and a UserKnownHostsFile, for the system ssh), `.ssh/known_hosts` holds this server's host key under
`[127.0.0.1]:<port>`. A test points HOME there (monkeypatch) and drops SSH_AUTH_SOCK so that no agent
offers other keys: host key checking stays on, exactly as in production.

`stop()` is the host going away: the listener and every session it forked (sshd detaches them into
their own sessions, so they would outlive a plain SIGTERM to the listener) end, open connections drop.
`start()` again brings it back on the same port with the same keys.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import TracebackType

from bot.sandbox.packages import SSHD
from bot.sandbox.processes import _free_port, _pids, _terminate, _track, _untrack, spawn_logged, wait_ready

PRIVSEP_DIR = Path("/run/sshd")


def keygen(path: Path) -> str:
    """A fresh ed25519 key pair at `path`; its public line."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "dockerbot-tests", "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return path.with_suffix(".pub").read_text().strip()


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


class Sshd:
    user = "root"

    def __init__(self, root: Path, docker_host: str, max_sessions: int = 10) -> None:
        self.root = Path(root)
        self.docker_host = docker_host
        self.max_sessions = max_sessions  # sshd's MaxSessions: sessions per connection (10 by default)
        self.port = _free_port()
        self.log = self.root / "sshd.log"
        self.home = self.root / "home"
        self._proc: subprocess.Popen[bytes] | None = None
        self._write_files()

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}"

    def _write_files(self) -> None:
        ssh_dir = self.home / ".ssh"
        ssh_dir.mkdir(parents=True, mode=0o700)
        (self.root / "docker-config").mkdir()  # the remote docker CLI's, not /root/.docker
        host_key = keygen(self.root / "ssh_host_ed25519_key")
        client_key = keygen(ssh_dir / "id_dockerbot")
        (self.root / "authorized_keys").write_text(client_key + "\n")
        known_hosts = ssh_dir / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_key}\n")
        (ssh_dir / "config").write_text(
            f"Host 127.0.0.1\n  IdentityFile {ssh_dir / 'id_dockerbot'}\n  UserKnownHostsFile {known_hosts}\n"
        )
        (self.root / "sshd_config").write_text(
            f"ListenAddress 127.0.0.1:{self.port}\n"
            f"HostKey {self.root / 'ssh_host_ed25519_key'}\n"
            f"PidFile {self.root / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {self.root / 'authorized_keys'}\n"
            "PubkeyAuthentication yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\n"
            "StrictModes no\n"
            "UsePAM no\n"
            f"MaxSessions {self.max_sessions}\n"
            f"SetEnv DOCKER_HOST={self.docker_host} DOCKER_CONFIG={self.root / 'docker-config'}\n"
        )

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10) -> None:
        if self.is_running():
            return
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        start = self.log.stat().st_size if self.log.exists() else 0  # not the last run's line
        self._proc = spawn_logged([SSHD, "-D", "-e", "-f", str(self.root / "sshd_config")], self.log)
        _track(self)
        listening = f"Server listening on 127.0.0.1 port {self.port}".encode()
        wait_ready(
            self._proc,
            lambda: listening in self.log.read_bytes()[start:],
            what=f"sshd on 127.0.0.1:{self.port}",
            log=self.log,
            stop=self.stop,
            timeout=timeout,
            poll=0.02,
        )

    def _sessions(self) -> list[int]:
        """The processes our sshd forked for connections, and theirs (dial-stdio)."""
        if self._proc is None:
            return []
        family = {self._proc.pid}
        grew = True
        while grew:
            children = {pid for pid in _pids() if pid not in family and _parent(pid) in family}
            family |= children
            grew = bool(children)
        return sorted(family - {self._proc.pid})

    def stop(self) -> None:
        if self._proc is not None:
            sessions = self._sessions()
            for pid in [self._proc.pid, *sessions]:
                _terminate(self._proc if pid == self._proc.pid else None, pid, timeout=5)
            self._proc = None
        _untrack(self)

    def __enter__(self) -> Sshd:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
