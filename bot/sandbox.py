"""A private, real Docker Engine with a local registry as its Docker Hub mirror, seeded offline.

Used by the pytest harness and by `make run` when no engine is reachable. Everything lives under one
temp dir (data root, exec root, sockets, logs, registry storage); the system engine is never touched.

    python -m bot.sandbox up        # start, print DOCKER_HOST=..., run until Ctrl-C / SIGTERM
    python -m bot.sandbox install   # apt-get install the engine, the registry and a static busybox

How a pull resolves: dockerd asks the mirror (our registry) first. On a miss (unknown repo or tag) it
falls back to registry-1.docker.io, which it reaches only through HTTPS_PROXY = our HubProxy: a loopback
TLS-intercepting proxy (its CA handed to dockerd via SSL_CERT_FILE) that answers like Docker Hub from the
same registry, so errors read as on a real host (`pull access denied for X, repository does not exist…`).
Nothing ever leaves loopback.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import hashlib
import http.client
import io
import json
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, Protocol

import docker

DOCKERD = "/usr/sbin/dockerd"
REGISTRY_BIN = "/usr/bin/docker-registry"
BUSYBOX = Path("/bin/busybox")
_PACKAGES = ("docker.io", "docker-registry", "busybox-static")
SEED_CACHE = Path("/tmp/dbot-seed-cache")
HUB_HOSTS = ("registry-1.docker.io", "index.docker.io", "auth.docker.io", "docker.io")
# Proxy for an engine without a HubProxy: a closed loopback port, so a Hub fallback fails at once
# instead of resolving public names (no DNS queries, no egress).
_DEAD_PROXY = "http://127.0.0.1:9"
_NO_PROXY = "127.0.0.1,localhost,::1"


# ---------------------------------------------------------------------------------------------- packages


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
    return missing


def ensure_packages() -> None:
    """Install dockerd, docker-registry and a static busybox with apt if any is missing (root only)."""
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
    subprocess.run(["apt-get", "install", "-y", *_PACKAGES, *missing], check=True, env=env)
    if still := _missing_packages():
        raise RuntimeError(f"still missing after apt-get install: {', '.join(still)}")


# ---------------------------------------------------------------------------------------------- helpers


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


def _env_without_docker() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}


def _http_ok(url: str, timeout: float = 1.0) -> bool:
    # No proxies: a developer's http_proxy must not intercept loopback checks.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


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


def _openssl(cwd: Path, command: str) -> None:
    done = subprocess.run(["openssl", *shlex.split(command)], capture_output=True, text=True, cwd=cwd)
    if done.returncode:
        raise RuntimeError(f"openssl {command} failed: {done.stderr.strip()}")


_EC = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"  # EC keys: milliseconds to make, unlike RSA


def _make_ca(d: Path) -> None:
    _openssl(d, f"req -x509 {_EC} -days 7 -subj /CN=dockerbot-sandbox-ca -keyout ca-key.pem -out ca.pem")


def _make_leaf(d: Path, who: str, ext: str) -> None:
    (d / f"{who}.ext").write_text(ext + "\n")
    _openssl(d, f"req {_EC} -subj /CN={who} -keyout {who}-key.pem -out {who}.csr")
    _openssl(
        d,
        f"x509 -req -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 7 -in {who}.csr "
        f"-extfile {who}.ext -out {who}.pem",
    )


# ---------------------------------------------------------------------------------------------- registry


class Registry:
    """`docker-registry serve` (distribution 2.x) on 127.0.0.1:<free port>, storage under root, deletes on."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = Path(root)
        # Chosen now so the mirror URL is known before anything starts (engines take it at construction).
        self.port = port or _free_port()
        self.storage = self.root / "storage"
        self.log = self.root / "registry.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 15) -> None:
        if self.is_running():
            return
        self.storage.mkdir(parents=True, exist_ok=True)
        config = self.root / "config.yml"  # JSON is valid YAML
        storage = {"filesystem": {"rootdirectory": str(self.storage)}, "delete": {"enabled": True}}
        log_cfg = {"level": "info", "accesslog": {"disabled": True}}
        config.write_text(
            json.dumps({"version": 0.1, "log": log_cfg, "storage": storage, "http": {"addr": self.address}})
        )
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(
                [REGISTRY_BIN, "serve", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _track(self)
        deadline = time.monotonic() + timeout
        while not _http_ok(f"{self.url}/v2/"):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                why = "exited" if self._proc.poll() is not None else f"not ready after {timeout:g}s"
                self.stop()
                raise RuntimeError(f"docker-registry on {self.address} {why}\n{_tail(self.log)}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self._proc is not None:
            _terminate(self._proc, self._proc.pid, timeout=5)
            self._proc = None
        _untrack(self)


# ---------------------------------------------------------------------------------------------- hub proxy


class HubProxy:
    """HTTPS proxy on loopback standing in for Docker Hub when dockerd falls back past the mirror.

    It intercepts CONNECTs to the Hub's hosts with a certificate from its own CA (dockerd trusts it via
    SSL_CERT_FILE) and forwards GET/HEAD to the registry; like the Hub, it answers an unknown repository
    with 401 and an insufficient_scope challenge. Other hosts and methods are refused (loopback only).
    """

    def __init__(self, root: Path, registry: Registry) -> None:
        self.root = Path(root)
        self.registry = registry
        self.ca_file = self.root / "ca.pem"
        self.log = self.root / "hub-proxy.log"
        self._server: _ProxyServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "HubProxy not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> None:
        if self._server is not None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        _make_ca(self.root)
        _make_leaf(self.root, "hub", "subjectAltName=" + ",".join(f"DNS:{h}" for h in HUB_HOSTS))
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(self.root / "hub.pem", self.root / "hub-key.pem")
        server = self._server = _ProxyServer(self, tls)
        threading.Thread(target=server.serve_forever, name="hub-proxy", daemon=True).start()
        _track(self)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        _untrack(self)

    def write_log(self, line: str) -> None:
        with contextlib.suppress(OSError), self.log.open("a") as f:
            f.write(line + "\n")


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, hub: HubProxy, tls: ssl.SSLContext) -> None:
        self.hub, self.tls = hub, tls
        super().__init__(("127.0.0.1", 0), _ConnectHandler)


class _ConnectHandler(BaseHTTPRequestHandler):
    """The proxy side: accepts `CONNECT <hub host>:443`, then speaks HTTP over TLS in the tunnel."""

    server: _ProxyServer

    def do_CONNECT(self) -> None:
        host = self.path.rsplit(":", 1)[0]
        if host not in HUB_HOSTS:
            # dockerd quotes this reason phrase: the error reads as on a host without network.
            self.send_error(502, f"dial tcp: lookup {host}: no such host")
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        self.close_connection = True
        try:
            tunnel = self.server.tls.wrap_socket(self.connection, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            self.server.hub.write_log(f"TLS handshake for {host} failed: {exc}")
            return
        with tunnel:
            _HubHandler(tunnel, self.client_address, self.server)

    def log_message(self, format: str, *args: Any) -> None:
        self.server.hub.write_log("proxy " + format % args)


def _unauthorized(repo: str) -> dict[str, Any]:
    detail = [{"Type": "repository", "Class": "", "Name": repo, "Action": "pull"}]
    return {"code": "UNAUTHORIZED", "message": "authentication required", "detail": detail}


class _HubHandler(BaseHTTPRequestHandler):
    """The Hub side, inside the tunnel: /v2/ API served from the registry, with the Hub's error codes."""

    server: _ProxyServer
    protocol_version = "HTTP/1.1"  # keep-alive: dockerd sends several requests per tunnel
    timeout = 120
    _KEEP = ("Content-Type", "Content-Length", "Docker-Content-Digest", "Docker-Distribution-Api-Version")

    def do_GET(self) -> None:
        self._forward(body=True)

    def do_HEAD(self) -> None:
        self._forward(body=False)

    def _send_json(
        self, status: int, payload: dict[str, Any], body: bool, headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _forward(self, body: bool) -> None:
        hub = self.server.hub
        if not self.path.startswith("/v2/"):  # e.g. the v1 search API: not served here
            self._send_json(404, {"errors": [{"code": "NOT_FOUND", "message": "not found"}]}, body)
            return
        conn = http.client.HTTPConnection(hub.registry.address, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() in ("accept", "range")}
            conn.request(self.command, self.path, headers=headers)
            resp = conn.getresponse()
            data = resp.read() if resp.status >= 400 else b""
            if resp.status == 404 and (repo := self._unknown_repo(data, hub.registry)):
                # The Hub does not tell a missing repository from a private one: 401 with a Bearer
                # challenge for insufficient scope, which dockerd turns into `pull access denied…`.
                challenge = (
                    'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                    f'scope="repository:{repo}:pull",error="insufficient_scope"'
                )
                self._send_json(401, {"errors": [_unauthorized(repo)]}, body, {"WWW-Authenticate": challenge})
                return
            self.send_response(resp.status)
            for key in self._KEEP:
                if (value := resp.getheader(key)) is not None:
                    self.send_header(key, value)
            if resp.getheader("Content-Length") is None:
                self.send_header("Connection", "close")  # no length: the end of the body is the close
                self.close_connection = True
            self.end_headers()
            if body:
                self.wfile.write(data)
                while chunk := resp.read(1 << 16):
                    self.wfile.write(chunk)
        finally:
            conn.close()

    def _unknown_repo(self, data: bytes, registry: Registry) -> str | None:
        """The repository of a 404 for a manifest or blob if the registry does not have it at all."""
        m = re.match(r"/v2/(.+)/(?:manifests|blobs|tags)/", self.path)
        if not m:
            return None
        if b"NAME_UNKNOWN" in data:
            return m[1]
        # A manifest of an unknown repository gets MANIFEST_UNKNOWN (a HEAD no body at all): ask the registry.
        conn = http.client.HTTPConnection(registry.address, timeout=10)
        try:
            conn.request("GET", f"/v2/{m[1]}/tags/list")
            return m[1] if conn.getresponse().status == 404 else None
        finally:
            conn.close()

    def log_message(self, format: str, *args: Any) -> None:
        self.server.hub.write_log("hub " + format % args)


# ---------------------------------------------------------------------------------------------- engine


@dataclass(frozen=True)
class TlsFiles:
    """PEM paths: for an engine its CA, server cert and key; for a client its CA, client cert and key."""

    ca: Path
    cert: Path
    key: Path


def make_tls(directory: Path) -> tuple[TlsFiles, TlsFiles]:
    """A throwaway CA, a server cert for 127.0.0.1 and a client cert, via openssl: (server, client)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    _make_ca(d)
    _make_leaf(d, "server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth")
    _make_leaf(d, "client", "extendedKeyUsage=clientAuth")
    return (
        TlsFiles(d / "ca.pem", d / "server.pem", d / "server-key.pem"),
        TlsFiles(d / "ca.pem", d / "client.pem", d / "client-key.pem"),
    )


class CliError(subprocess.CalledProcessError):
    """CalledProcessError whose message carries the CLI's stderr (what the engine said)."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstderr: {(self.stderr or '').strip()}"


class Engine:
    """One dockerd: private data/exec roots and socket, no container networking, `mirror` as Hub mirror."""

    def __init__(
        self, root: Path, mirror: str | None, tcp_tls: TlsFiles | None = None, hub: HubProxy | None = None
    ) -> None:
        self.root = Path(root)
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
            DOCKERD,
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
        env["PATH"] = ":".join(system + path)
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
        (self.root / "daemon.json").write_text("{}\n")
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
        docker_bin = shutil.which("docker") or "/usr/bin/docker"
        raw = subprocess.run(
            [docker_bin, *args],
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


# ---------------------------------------------------------------------------------------------- seeding


@dataclass(frozen=True)
class SeedImage:
    """An image pushed to the mirror: `ref` as a user types it ("ubuntu:22.04", "openresty/openresty:…")."""

    ref: str
    layers: int = 2
    labels: dict[str, str] = field(default_factory=dict)
    big_file_mb: int = 0

    def files(self) -> dict[str, bytes]:
        # A small file unique to the ref gives each image its own top layer, hence its own ID.
        return {"etc/dockerbot-seed": f"{self.ref}\n".encode()}


SEED_IMAGES: list[SeedImage] = [
    SeedImage("ubuntu:latest"),
    SeedImage("ubuntu:22.04"),
    SeedImage("redis:6"),
    SeedImage("redis:7"),
    SeedImage("alpine:latest"),
    SeedImage("nginx:latest"),
    SeedImage("postgres:16"),
    SeedImage("busybox:latest"),
    SeedImage("openresty/openresty:1.13.6.2-alpine", layers=3),
]


def split_ref(name: str) -> tuple[str, str]:
    """Registry path and tag: "ubuntu" -> ("library/ubuntu", "latest"); "ns/app:1" -> ("ns/app", "1")."""
    repo, tag = name, "latest"
    if ":" in name.rsplit("/", 1)[-1]:
        repo, tag = name.rsplit(":", 1)
    if "/" not in repo:
        repo = f"library/{repo}"
    return repo, tag


def _check_stream(events: Iterable[dict[str, Any]], what: str) -> list[dict[str, Any]]:
    seen = []
    for ev in events:
        seen.append(ev)
        if "error" in ev or "errorDetail" in ev:
            msg = ev.get("error") or (ev.get("errorDetail") or {}).get("message")
            raise RuntimeError(f"{what}: {msg}")
    return seen


def _build_context(
    out: IO[bytes], name: str, files: dict[str, bytes], layers: int, labels: dict[str, str], big_file_mb: int
) -> None:
    """Writes a tar build context: busybox, then `files` (+ big.bin) in one layer, then filler layers."""
    lines = ["FROM scratch", "COPY busybox /bin/busybox"]
    with tarfile.open(fileobj=out, mode="w") as tar:

        def add(arcname: str, data: bytes = b"", path: Path | None = None, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(arcname)
            info.mode = mode  # mtime 0: identical content gives an identical (shared) layer
            if path is None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                return
            info.size = path.stat().st_size
            with path.open("rb") as f:
                tar.addfile(info, f)

        add("busybox", path=BUSYBOX, mode=0o755)
        used = 1
        if files or big_file_mb:
            for rel, data in files.items():
                add(f"files/{rel.lstrip('/')}", data)
            if big_file_mb:
                # Random bytes do not compress, so a pull moves the full size (benchmarks).
                with tempfile.NamedTemporaryFile() as big:
                    for _ in range(big_file_mb):
                        big.write(os.urandom(1 << 20))
                    big.flush()
                    add("files/big.bin", path=Path(big.name))
            lines.append("COPY files/ /")
            used += 1
        for i in range(used + 1, layers + 1):
            add(f"layer{i}.txt", f"{name} layer {i}\n".encode())
            lines.append(f"COPY layer{i}.txt /.layer{i}")
        if labels:
            lines.append("LABEL " + " ".join(f"{json.dumps(k)}={json.dumps(v)}" for k, v in labels.items()))
        # busybox sleep as PID 1 ignores SIGTERM: without this, every `docker stop` and every engine
        # shutdown with a running container would wait the full 10 s stop timeout.
        lines.append("STOPSIGNAL SIGKILL")
        lines.append('CMD ["/bin/busybox", "sleep", "3600"]')
        add("Dockerfile", ("\n".join(lines) + "\n").encode())
    out.seek(0)


def _build_and_push(
    builder: Engine,
    registry: Registry,
    name: str,
    files: dict[str, bytes],
    layers: int,
    labels: dict[str, str] | None,
    big_file_mb: int,
) -> str:
    """Build and push; returns the local tag (<registry>/<path>:<tag>), still present on the builder."""
    repo, tag = split_ref(name)
    target = f"{registry.address}/{repo}"
    needed = 1 + bool(files or big_file_mb)
    if layers < needed:
        raise ValueError(f"{name}: {layers} layers is fewer than the {needed} its content needs")
    client = builder.client()
    try:
        with tempfile.SpooledTemporaryFile(max_size=64 << 20) as ctx:
            _build_context(ctx, name, files, layers, labels or {}, big_file_mb)
            stream = client.api.build(
                fileobj=ctx, custom_context=True, tag=f"{target}:{tag}", rm=True, forcerm=True, decode=True
            )
            _check_stream(stream, f"build {name}")
        _check_stream(client.api.push(target, tag=tag, stream=True, decode=True), f"push {name}")
    finally:
        client.close()
    return f"{target}:{tag}"


def push_image(
    builder: Engine,
    registry: Registry,
    name: str,
    files: dict[str, bytes],
    layers: int = 2,
    labels: dict[str, str] | None = None,
    big_file_mb: int = 0,
) -> None:
    """Build `name` FROM scratch on `builder` (busybox layer, a layer with `files` and big.bin of
    `big_file_mb` random MiB, filler layers up to `layers`), push it to `registry` under
    <address>/library/<repo>:<tag> (official) or <address>/<ns>/<repo>:<tag>, then remove it locally."""
    local = _build_and_push(builder, registry, name, files, layers, labels, big_file_mb)
    client = builder.client()
    try:
        client.api.remove_image(local, force=True)
    finally:
        client.close()


def seed_registry(registry: Registry, builder: Engine, images: Iterable[SeedImage] = SEED_IMAGES) -> None:
    """Push the images to the registry through `builder`, then remove them from the builder.

    Builds run 3 at a time (the legacy builder spends ~0.2 s per step), and local copies are removed only
    at the end so the shared busybox step stays in the build cache throughout."""

    def one(img: SeedImage) -> str:
        return _build_and_push(
            builder, registry, img.ref, img.files(), img.layers, img.labels, img.big_file_mb
        )

    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = [pool.submit(one, img) for img in images]
    client = builder.client()
    try:
        for done in futures:
            if done.exception() is None:
                client.api.remove_image(done.result(), force=True)
    finally:
        client.close()
    for done in futures:
        done.result()  # re-raises the first failure


# ---------------------------------------------------------------------------------------------- sandbox


def _seed_cache_dir(images: list[SeedImage]) -> Path:
    # Keyed by this file, busybox and the image list: any change to how images are made starts afresh.
    key = hashlib.sha256(Path(__file__).read_bytes() + BUSYBOX.read_bytes() + repr(images).encode())
    return SEED_CACHE / key.hexdigest()[:16]


def _save_seed_cache(storage: Path, cache: Path) -> None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cache.parent))
    try:
        shutil.copytree(storage, tmp, dirs_exist_ok=True)
        tmp.rename(cache)  # atomic; fails harmlessly if another sandbox saved it first
    except OSError:
        pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class Sandbox:
    """Registry + HubProxy + one engine using the registry as Docker Hub mirror, all under `root`.

    `root` defaults to a new short temp dir (unix socket paths under it must stay < 100 chars), removed
    at stop(); a root you pass is kept (processes stopped, mounts undone) for reuse. With `seed_cache`,
    the seeded registry storage is saved under SEED_CACHE once and copied into later sandboxes, which then
    skip the builds (the engine starts empty either way)."""

    def __init__(self, root: Path | None = None, seed_cache: bool = True) -> None:
        self._own_root = root is None
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="dbot-", dir="/tmp"))
        self.registry = Registry(self.root / "registry")
        self.hub = HubProxy(self.root / "hub", self.registry)
        self.engine = Engine(self.root / "engine", mirror=self.registry.url, hub=self.hub)
        self.engines: list[Engine] = [self.engine]
        self.seed_cache = seed_cache
        self.seed_seconds: float | None = None
        self.seeded_from_cache = False

    @property
    def docker_host(self) -> str:
        return self.engine.docker_host

    def start(self, seed: bool = True) -> Sandbox:
        _track(self)
        try:
            ensure_packages()
            t0 = time.monotonic()
            cache = _seed_cache_dir(SEED_IMAGES) if seed and self.seed_cache else None
            if cache is not None and cache.is_dir():
                shutil.copytree(cache, self.registry.storage, dirs_exist_ok=True)
                self.seeded_from_cache = True
                self.seed_seconds = time.monotonic() - t0
            self.registry.start()
            self.hub.start()
            self.engine.start()
            if seed and not self.seeded_from_cache:
                t0 = time.monotonic()
                seed_registry(self.registry, self.engine)
                self.seed_seconds = time.monotonic() - t0
                if cache is not None:
                    _save_seed_cache(self.registry.storage, cache)
        except BaseException:
            self.stop()
            raise
        return self

    def add_engine(self, name: str, tcp_tls: TlsFiles | None = None) -> Engine:
        """Start another engine (data root and socket under root/name) on the same mirror and Hub proxy."""
        engine = Engine(self.root / name, mirror=self.registry.url, tcp_tls=tcp_tls, hub=self.hub)
        self.engines.append(engine)
        engine.start()
        return engine

    def stop(self) -> None:
        """Idempotent, and safe after a half-finished start."""
        for engine in reversed(self.engines):
            with contextlib.suppress(Exception):
                engine.stop()
        self.hub.stop()
        self.registry.stop()
        _unmount_under(self.root)
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)
        _untrack(self)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bot.sandbox",
        description=__doc__,
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
    args = parser.parse_args(argv)

    if args.cmd == "install":
        ensure_packages()
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
