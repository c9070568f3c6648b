"""One private dockerd (its own data/exec roots, socket and logs) and the docker CLI aimed at it alone."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import docker

from bot.sandbox.hub import HubProxy
from bot.sandbox.newengine import EngineBinaries
from bot.sandbox.packages import DOCKERD
from bot.sandbox.processes import (
    _cmdline,
    _free_port,
    _pid_alive,
    _pids,
    _tail,
    _terminate,
    _track,
    _unmount_under,
    _untrack,
)
from bot.sandbox.tls import TlsFiles

# Proxy for an engine without a HubProxy: a closed loopback port, so a Hub fallback fails at once
# instead of resolving public names (no DNS queries, no egress).
_DEAD_PROXY = "http://127.0.0.1:9"
_NO_PROXY = "127.0.0.1,localhost,::1"


def _env_without_docker() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}


def _unix_ping(sock: Path, timeout: float = 1.0) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(sock))
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            status = s.recv(64).split(b"\r\n", 1)[0]
            return status.startswith(b"HTTP/1.") and b" 200 " in status + b" "
    except OSError:
        return False


class CliError(subprocess.CalledProcessError):
    """CalledProcessError whose message carries the CLI's stderr (what the engine said)."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstderr: {(self.stderr or '').strip()}"


class Engine:
    """One dockerd: private data/exec roots and socket, no container networking, `mirror` as Hub mirror.

    `binaries` picks the dockerd and docker CLI (default: the system's); `containerd_store` turns on the
    containerd image store (Engine 29's default for new installs) instead of the classic graph drivers."""

    def __init__(
        self,
        root: Path,
        mirror: str | None,
        tcp_tls: TlsFiles | None = None,
        hub: HubProxy | None = None,
        binaries: EngineBinaries | None = None,
        containerd_store: bool = False,
    ) -> None:
        self.root = Path(root)
        self.binaries = binaries or EngineBinaries(DOCKERD, shutil.which("docker") or "/usr/bin/docker")
        self.containerd_store = containerd_store
        self.mirror = mirror
        self.tcp_tls = tcp_tls
        self.hub = hub
        self.data_root = self.root / "data"
        self.exec_root = self.root / "exec"
        self.pidfile = self.root / "docker.pid"
        self.socket = self.root / "docker.sock"
        self.log = self.root / "dockerd.log"
        self.cli_config = self.root / "cli-config"
        self.docker_host = f"unix://{self.socket}"
        # Port chosen once so a restart keeps the address.
        self.tcp_host: str | None = f"tcp://127.0.0.1:{_free_port()}" if tcp_tls else None
        self._proc: subprocess.Popen[bytes] | None = None
        if len(str(self.exec_root / "containerd" / "containerd-debug.sock")) > 100:
            raise ValueError(f"engine root {self.root} is too long for unix socket paths (keep it short)")

    def _args(self) -> list[str]:
        args = [
            self.binaries.dockerd,
            f"--config-file={self.root / 'daemon.json'}",  # not /etc/docker/daemon.json
            f"--data-root={self.data_root}",
            f"--exec-root={self.exec_root}",
            f"--pidfile={self.pidfile}",
            f"--host={self.docker_host}",
            # No docker0 bridge, no NAT rules: containers get only loopback (private ranges are off limits).
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
        ]
        if self.mirror:
            args.append(f"--registry-mirror={self.mirror}")
        if self.containerd_store:
            # Already the engines' default, written down: the containerd store's resolver tries TLS first
            # even here and falls back to plain HTTP only when the registry answers in HTTP.
            args.append("--insecure-registry=127.0.0.0/8")
        if self.tcp_tls and self.tcp_host:
            tls = self.tcp_tls
            args += [
                f"--host={self.tcp_host}",
                "--tlsverify",
                f"--tlscacert={tls.ca}",
                f"--tlscert={tls.cert}",
            ]
            args.append(f"--tlskey={tls.key}")
        return args

    def _env(self) -> dict[str, str]:
        proxies = ("http_proxy", "https_proxy", "no_proxy", "all_proxy", "ssl_cert_file", "ssl_cert_dir")
        env = {k: v for k, v in _env_without_docker().items() if k.lower() not in proxies}
        path = env.get("PATH", "").split(":")
        # runc, containerd and the shim are looked up on PATH.
        system = [p for p in ("/usr/sbin", "/usr/bin", "/sbin", "/bin") if p not in path]
        # An unpacked engine's own containerd and shim come first; runc stays the system's.
        env["PATH"] = ":".join([*self.binaries.path, *system, *path])
        proxy = self.hub.url if self.hub else _DEAD_PROXY
        env.update(HTTP_PROXY=proxy, HTTPS_PROXY=proxy, NO_PROXY=_NO_PROXY)
        if self.hub:
            env["SSL_CERT_FILE"] = str(self.hub.ca_file)  # Go reads its trusted roots from here
        return env

    def _pid(self) -> int | None:
        if self._proc is not None:
            return self._proc.pid
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.pidfile.read_text().strip())
            # Guard against pid reuse: only a dockerd started for this root is ours.
            if "dockerd" in _cmdline(pid) and str(self.data_root) in _cmdline(pid):
                return pid
        return None

    def is_running(self) -> bool:
        pid = self._pid()
        return pid is not None and _pid_alive(pid)

    def start(self, timeout: float = 30) -> None:
        if os.geteuid() != 0:
            raise RuntimeError("dockerd needs root: run the sandbox as root")
        if self.is_running():
            return
        self.cli_config.mkdir(parents=True, exist_ok=True)
        config = {"features": {"containerd-snapshotter": True}} if self.containerd_store else {}
        (self.root / "daemon.json").write_text(json.dumps(config) + "\n")
        with self.log.open("ab") as log:
            log.write(f"=== dockerd start {time.strftime('%Y-%m-%dT%H:%M:%S')} ===\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self._args(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env(),
                start_new_session=True,
            )
        _track(self)
        deadline = time.monotonic() + timeout
        while not _unix_ping(self.socket):
            exited = self._proc.poll() is not None
            if exited or time.monotonic() > deadline:
                why = f"exited with {self._proc.returncode}" if exited else f"not ready after {timeout:g}s"
                self.stop()
                raise RuntimeError(f"dockerd for {self.root} {why}\n{_tail(self.log)}")
            time.sleep(0.05)

    def stop(self, timeout: float = 15) -> None:
        """Stop dockerd (it stops its containers and its containerd), then clear whatever it left behind."""
        _terminate(self._proc, self._pid(), timeout)
        self._proc = None
        self._kill_leftovers()
        _unmount_under(self.root)
        _untrack(self)

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill(self) -> None:
        """SIGKILL dockerd, as a crash or the OOM killer would; then clear what it left behind."""
        pid = self._pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if self._proc is not None:
                self._proc.wait(10)
        self.stop()

    def _kill_leftovers(self) -> None:
        """After a SIGKILL or crash, containerd and its shims (named by our paths) and container processes
        (in cgroup /docker/<id> of one of our containers) outlive dockerd: kill them."""
        marker = str(self.root) + "/"
        ids: set[str] = set()
        with contextlib.suppress(OSError):
            ids = {e.name for e in os.scandir(self.data_root / "containers")}
        victims = []
        for pid in _pids():
            if pid == os.getpid():
                continue
            cmd = _cmdline(pid)
            if marker in cmd and ("containerd" in cmd or "dockerd" in cmd):
                victims.append(pid)
            elif ids:
                with contextlib.suppress(OSError):
                    cgroups = Path(f"/proc/{pid}/cgroup").read_text()
                    if any(f"/docker/{cid}" in cgroups for cid in ids):
                        victims.append(pid)
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while any(_pid_alive(p) for p in victims) and time.monotonic() < deadline:
            time.sleep(0.05)
        # A killed containerd can stay a zombie (PID 1 need not reap), and dockerd takes a zombie's pid
        # in containerd.pid for a live containerd and waits for it forever: drop stale pidfiles.
        for pidfile in (self.pidfile, self.exec_root / "containerd" / "containerd.pid"):
            with contextlib.suppress(OSError, ValueError):
                if not _pid_alive(int(pidfile.read_text().strip())):
                    pidfile.unlink()

    def cli_env(self) -> dict[str, str]:
        """Environment for the docker CLI aimed at this engine only (no contexts, no user config)."""
        env = _env_without_docker()
        env.update(DOCKER_HOST=self.docker_host, DOCKER_CONFIG=str(self.cli_config))
        return env

    def cli(
        self, *args: str, check: bool = True, input: bytes | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run the docker CLI against this engine; stdout/stderr decoded. Raises CliError if `check`."""
        raw = subprocess.run(
            [self.binaries.docker, *args],
            input=input,
            capture_output=True,
            env=self.cli_env(),
            timeout=timeout,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        out, err = raw.stdout.decode(errors="replace"), raw.stderr.decode(errors="replace")
        done = subprocess.CompletedProcess(raw.args, raw.returncode, out, err)
        if check and done.returncode:
            raise CliError(done.returncode, done.args, done.stdout, done.stderr)
        return done

    def client(self, **kwargs: Any) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.docker_host, **kwargs)

    def server_version(self) -> str:
        """The engine's version and image store, as the test report names it."""
        fmt = "{{.ServerVersion}} {{.Driver}}"
        version, driver = self.cli("info", "--format", fmt).stdout.split()
        return f"Engine {version} ({'containerd image store' if self.containerd_store else driver})"
