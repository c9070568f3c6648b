"""A registry in front of the sandbox's that forwards everything unless told to misbehave:
stall, refuse like Docker Hub, corrupt layers, slow blobs down, require basic auth, require a
bearer token from its own token service (Docker Hub's flow), or rate-limit manifests (429).
The engine reaches it over plain HTTP on loopback, which dockerd allows by default."""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class FakeRegistry:
    """Forwards to `upstream` (the sandbox registry) unless a fault is set."""

    upstream: str
    stall_manifests: bool = False
    stall_blobs: bool = False
    deny: bool = False
    corrupt_layers: bool = False
    blob_delay: float = 0.0  # the n-th blob request waits n * blob_delay (progress spread over time)
    manifest_delay: float = 0.0  # the first manifest request waits this long
    basic_auth: tuple[str, str] | None = None
    trickle: tuple[int, float] | None = None  # layer blobs sent (bytes, every seconds) until stopped
    # Docker Hub's token flow: 401 with a Bearer challenge naming /token here; /token hands out
    # TOKEN (anonymously, or only for these basic credentials when set).
    token_auth: bool = False
    token_credentials: tuple[str, str] | None = None
    rate_limited: bool = False  # manifests answer 429 TOOMANYREQUESTS, as Docker Hub over its limit
    seen: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, Authorization)
    _release: threading.Event = field(default_factory=threading.Event)
    _configs: set[str] = field(default_factory=set)
    _blobs: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> FakeRegistry:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # A TLS hello is answered `HTTP/1.0 400`, as a real registry does: the containerd store's
            # resolver tries HTTPS first and falls back to plain HTTP only on an HTTP answer (Python's
            # default would answer without a status line, which reads as a broken TLS record).
            default_request_version = "HTTP/1.0"

            def do_GET(self) -> None:
                fake.handle(self)

            def do_HEAD(self) -> None:
                fake.handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._release.set()  # stalled requests end, without an answer
        self._server.shutdown()
        self._server.server_close()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def requests(self, kind: str) -> list[tuple[str, str, str]]:
        with self._lock:
            return [s for s in self.seen if f"/{kind}/" in s[1]]

    TOKEN = "fake-registry-token-7c1d"

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        auth = h.headers.get("Authorization", "")
        with self._lock:
            self.seen.append((h.command, h.path, auth))
        if self.token_auth and h.path.startswith("/token"):
            if self.token_credentials is not None:
                wanted = "Basic " + base64.b64encode(":".join(self.token_credentials).encode()).decode()
                if auth != wanted:
                    return self._answer(h, 401, b'{"details":"incorrect username or password"}')
            return self._answer(h, 200, json.dumps({"token": self.TOKEN, "expires_in": 300}).encode())
        if self.token_auth and h.path.startswith("/v2/") and auth != f"Bearer {self.TOKEN}":
            repo = h.path.split("/manifests/")[0].split("/blobs/")[0].removeprefix("/v2/")
            challenge = f'Bearer realm="http://{self.address}/token",service="fake-registry"'
            if repo:
                challenge += f',scope="repository:{repo}:pull"'
            error = {"code": "UNAUTHORIZED", "message": "authentication required", "detail": None}
            return self._answer(
                h, 401, json.dumps({"errors": [error]}).encode(), {"WWW-Authenticate": challenge}
            )
        if self.rate_limited and "/manifests/" in h.path:
            error = {"code": "TOOMANYREQUESTS", "message": "You have reached your pull rate limit."}
            return self._answer(h, 429, json.dumps({"errors": [error]}).encode())
        if self.basic_auth is not None:
            wanted = "Basic " + base64.b64encode(":".join(self.basic_auth).encode()).decode()
            if auth != wanted:
                error = {"code": "UNAUTHORIZED", "message": "authentication required", "detail": None}
                extra = {"WWW-Authenticate": 'Basic realm="fake"'}
                return self._answer(h, 401, json.dumps({"errors": [error]}).encode(), extra)
        if h.path == "/v2/":
            return self._answer(h, 200, b"{}")
        if "/manifests/" in h.path:
            if self.deny:  # what Docker Hub answers for a repository that is missing or not yours
                repo = h.path.split("/manifests/")[0].removeprefix("/v2/")
                challenge = (
                    f'Bearer realm="http://{self.address}/token",service="fake",'
                    f'scope="repository:{repo}:pull",error="insufficient_scope"'
                )
                detail = [{"Type": "repository", "Class": "", "Name": repo, "Action": "pull"}]
                error = {"code": "UNAUTHORIZED", "message": "authentication required", "detail": detail}
                body = json.dumps({"errors": [error]}).encode()
                return self._answer(h, 401, body, {"WWW-Authenticate": challenge})
            if self.stall_manifests:
                self._release.wait()
                return
            with self._lock:
                wait, self.manifest_delay = self.manifest_delay, 0.0  # the first request only
            time.sleep(wait)
        if "/blobs/" in h.path:
            if self.stall_blobs:
                self._release.wait()
                return
            with self._lock:
                self._blobs += 1
                wait = self._blobs * self.blob_delay
            time.sleep(wait)
        self._forward(h)

    def _forward(self, h: BaseHTTPRequestHandler) -> None:
        request = urllib.request.Request(f"http://{self.upstream}{h.path}", method=h.command)
        if h.headers.get("Accept"):
            request.add_header("Accept", h.headers["Accept"])
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                status, headers, body = resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as error:
            status, headers, body = error.code, error.headers, error.read()
        if "/manifests/" in h.path and status == 200 and body:
            self._configs.add(json.loads(body).get("config", {}).get("digest", ""))
        digest = h.path.rsplit("/", 1)[-1]
        if self.corrupt_layers and "/blobs/" in h.path and digest not in self._configs and body:
            body = bytes(len(body))  # same length, wrong content: the engine's verification fails
        extra = {k: headers[k] for k in ("Content-Type", "Docker-Content-Digest") if headers.get(k)}
        length = int(headers.get("Content-Length") or len(body))
        if self.trickle and "/blobs/" in h.path and digest not in self._configs and h.command == "GET":
            return self._trickle(h, status, body, extra, length)
        self._answer(h, status, body, extra, length=length)

    def _trickle(
        self, h: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str], length: int
    ) -> None:
        """A registry that keeps the pull alive with a few bytes at a time, never idle for long."""
        assert self.trickle is not None
        size, every = self.trickle
        h.send_response(status)
        h.send_header("Docker-Distribution-API-Version", "registry/2.0")
        for key, value in headers.items():
            h.send_header(key, value)
        h.send_header("Content-Length", str(length))
        h.end_headers()
        for start in range(0, len(body), size):
            if self._release.wait(every):
                return
            try:
                h.wfile.write(body[start : start + size])
                h.wfile.flush()
            except OSError:
                return

    @staticmethod
    def _answer(
        h: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
        length: int | None = None,
    ) -> None:
        h.send_response(status)
        h.send_header("Docker-Distribution-API-Version", "registry/2.0")
        for key, value in (headers or {}).items():
            h.send_header(key, value)
        if "Content-Type" not in (headers or {}):
            h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body) if length is None else length))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)
