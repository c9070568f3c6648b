"""A fake Docker Hub: a loopback TLS-intercepting HTTPS proxy that answers for the Hub's hosts from the
local registry, with the Hub's errors, so a pull that misses the mirror fails as on a real host.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bot.sandbox.processes import _track, _untrack
from bot.sandbox.registry import Registry
from bot.sandbox.tls import _make_ca, _make_leaf

HUB_HOSTS = ("registry-1.docker.io", "index.docker.io", "auth.docker.io", "docker.io")


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
