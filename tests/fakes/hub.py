"""A local fake of Docker Hub's HTTP API (v2): repository search and tag listing.

Shapes follow /work/shared/reference/docker-engine.md §3:

* ``GET /v2/search/repositories/?query=&page=&page_size=`` -> ``{count,next,previous,results}``
  (``next``/``previous`` are ``""`` when absent, as in the live shape; tags use ``null``).
* ``GET /v2/namespaces/{ns}/repositories/{repo}/tags?page=&page_size=&name=&ordering=``
* ``GET /v2/repositories/{ns}/{repo}/tags/?page_size=&page=&ordering=last_updated&name=``
* ``GET .../tags/{tag}`` for a single tag.

Official images live under namespace ``library`` (their search ``repo_name`` has no prefix).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

if TYPE_CHECKING:
    from bot.core.services import Services

__all__ = ["FakeHub", "HubRequest", "default_dataset", "hub_repo", "hub_tag"]

SEARCH_DEFAULT_PAGE_SIZE = 25
TAGS_DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 100

_EPOCH = datetime(2025, 10, 6, 18, 5, 12, 123456, tzinfo=UTC)
_INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
_MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"

#: (architecture, variant) per platform name used by :func:`hub_tag`.
_PLATFORMS: dict[str, tuple[str, str | None]] = {
    "amd64": ("amd64", None),
    "arm64": ("arm64", "v8"),
    "arm/v7": ("arm", "v7"),
    "arm/v6": ("arm", "v6"),
    "386": ("386", None),
    "ppc64le": ("ppc64le", None),
    "s390x": ("s390x", None),
    "riscv64": ("riscv64", None),
}


def _digest(*parts: object) -> str:
    return "sha256:" + hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def hub_tag(
    repo: str,
    name: str,
    *,
    platforms: tuple[str, ...] = ("amd64",),
    attestations: bool | None = None,
    size: int = 30_000_000,
    age_days: float = 0.0,
) -> dict[str, Any]:
    """Build one Hub tag object for ``repo`` ("library/redis", "bitnami/redis").

    More than one platform makes it a multi-arch index; ``attestations`` (default: True for
    multi-arch) adds an ``architecture:"unknown", os:"unknown"`` entry per platform, as Hub does.
    Sizes are compressed bytes; ``age_days`` moves last_updated into the past.
    """
    multi = len(platforms) > 1
    if attestations is None:
        attestations = multi
    pushed = _iso(_EPOCH - timedelta(days=age_days))
    images: list[dict[str, Any]] = []
    for i, plat in enumerate(platforms):
        arch, variant = _PLATFORMS.get(plat, (plat, None))
        images.append(
            {
                "architecture": arch,
                "features": "",
                "variant": variant,
                "digest": _digest(repo, name, plat),
                "os": "linux",
                "os_features": "",
                "os_version": None,
                "size": size - i * 731_113,
                "status": "active",
                "last_pulled": pushed,
                "last_pushed": pushed,
            }
        )
    if attestations:
        for plat in platforms:
            images.append(
                {
                    "architecture": "unknown",
                    "features": "",
                    "variant": None,
                    "digest": _digest(repo, name, plat, "attestation"),
                    "os": "unknown",
                    "os_features": "",
                    "os_version": None,
                    "size": 31_337,
                    "status": "active",
                    "last_pulled": pushed,
                    "last_pushed": pushed,
                }
            )
    digest = _digest(repo, name, "index") if multi or attestations else images[0]["digest"]
    media_type = _INDEX_MEDIA_TYPE if multi or attestations else _MANIFEST_MEDIA_TYPE
    return {
        "creator": 7,
        "id": int(hashlib.sha256(f"{repo}:{name}".encode()).hexdigest()[:8], 16),
        "images": images,
        "last_updated": pushed,
        "last_updater": 1156886,
        "last_updater_username": "doijanky",
        "name": name,
        "repository": int(hashlib.sha256(repo.encode()).hexdigest()[:6], 16),
        "full_size": images[0]["size"],
        "v2": True,
        "tag_status": "active",
        "tag_last_pulled": pushed,
        "tag_last_pushed": pushed,
        "media_type": media_type,
        "content_type": "image",
        "digest": digest,
    }


def hub_repo(
    repo_name: str,
    *,
    stars: int = 0,
    pulls: int = 0,
    description: str = "",
    automated: bool = False,
    tags: list[dict[str, Any]] | list[str] | None = None,
) -> dict[str, Any]:
    """A dataset entry: the search result fields plus ``tags`` (tag dicts, or names -> amd64 tags).

    ``repo_name`` without "/" is an official image (namespace ``library``, ``repo_owner`` "").
    """
    official = "/" not in repo_name
    full = f"library/{repo_name}" if official else repo_name
    if tags is None:
        tags = ["latest"]
    tag_objs = [hub_tag(full, t, age_days=i * 3.5) if isinstance(t, str) else t for i, t in enumerate(tags)]
    return {
        "repo_name": repo_name,
        "short_description": description,
        "star_count": stars,
        "pull_count": pulls,
        "repo_owner": "" if official else repo_name.split("/", 1)[0],
        "is_automated": automated,
        "is_official": official,
        "tags": tag_objs,
    }


_MULTI = ("amd64", "arm64", "arm/v7")
_WIDE = ("amd64", "arm64", "arm/v7", "arm/v6", "386", "ppc64le", "s390x")


def _tags(full: str, names: list[str], platforms: tuple[str, ...], size: int) -> list[dict[str, Any]]:
    return [
        hub_tag(full, n, platforms=platforms, size=size + i * 97_531, age_days=i * 2.25)
        for i, n in enumerate(names)
    ]


# Redis-ish repos after the first three. (name, stars, description); stars >= 1000 are placed so
# that they are spread over pages 1-3 at page_size 25 (and pages 2-7 at page_size 10).
_REDIS_NAMED: list[tuple[str, int, str]] = [
    (
        "redis/redis-stack-server",
        189,
        "redis-stack-server installs a Redis server with additional database capabilities",
    ),
    ("redis/redisinsight", 160, "Redis Insight - the best GUI for Redis"),
    ("redislabs/redisearch", 310, "Redis With the RedisSearch module pre-loaded."),
    ("redislabs/rejson", 140, "RedisJSON - Enhanced JSON data type processing for Redis"),
    ("oliver006/redis_exporter", 420, "Prometheus Exporter for Redis Metrics.\nSupports Redis 2.x - 7.x"),
    ("rediscommander/redis-commander", 190, "Redis management tool written in node.js"),
    ("bitnami/redis-sentinel", 75, "Bitnami container image for Redis Sentinel"),
    ("bitnami/redis-cluster", 52, "Bitnami container image for Redis Cluster"),
    ("grokzen/redis-cluster", 91, "Redis cluster 3.0, 3.2, 4.0, 5.0, 6.0, 6.2, 7.0"),
    ("bitnami/redis-exporter", 33, ""),  # the one with an empty description
    ("redislabs/redisgraph", 1210, "A graph database module for Redis"),
    ("sameersbn/redis", 88, "Dockerfile to create a Docker container image for Redis."),
    ("redislabs/redistimeseries", 29, "Time Series data structure for Redis"),
    ("redislabs/redisbloom", 27, "Probabilistic Datatypes Module for Redis"),
    ("redislabs/redismod", 1555, "An automated build of redismod - latest Redis with\nall modules"),
    ("kubedb/redis", 3, "Redis for KubeDB"),
    ("circleci/redis", 12, "CircleCI images for Redis"),
    ("cimg/redis", 6, "The CircleCI Redis convenience image."),
    (
        "arm64v8/redis",
        20,
        "Redis is an open source key-value store that functions as a data structure server.",
    ),
    (
        "arm32v7/redis",
        18,
        "Redis is an open source key-value store that functions as a data structure server.",
    ),
    (
        "amd64/redis",
        2001,
        "Redis is an open source key-value store that functions as a data structure server.",
    ),
    ("i386/redis", 5, "Redis is an open source key-value store that functions as a data structure server."),
    ("s390x/redis", 1, "Redis is an open source key-value store."),
    ("ppc64le/redis", 2, "Redis is an open source key-value store."),
    ("rapidfort/redis", 9, "RapidFort optimized, hardened image for Redis"),
    (
        "chainguard/redis",
        4,
        "Build, ship and run secure software with Chainguard's low-to-zero CVE container images.",
    ),
    (
        "ubuntu/redis",
        11,
        "Redis, an in-memory data structure store. Long-term tracks maintained by Canonical.",
    ),
    ("bitnamicharts/redis", 2, "Bitnami Helm chart for Redis"),
    ("webhippie/redis", 14, "Docker image for redis"),
    ("tutum/redis", 1320, "Base docker image to run a Redis server\n\nDeprecated"),
]


def _redis_entries() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        hub_repo(
            "redis",
            stars=13000,
            pulls=1_234_567_890,
            description="Redis is the world’s fastest data platform for caching, vector search, and NoSQL"
            " databases.",
            tags=_tags(
                "library/redis",
                [
                    "latest",
                    "8.2",
                    "8.2.1",
                    "8",
                    "bookworm",
                    "8.2-alpine",
                    "alpine",
                    "8.2.1-alpine",
                    "7.4",
                    "7.4.5",
                    "7.4-alpine",
                    "7.2",
                    "7.2.10",
                    "6.2",
                    "6.2.19",
                ],
                _WIDE,
                size=49_800_000,
            ),
        ),
        hub_repo(
            "bitnami/redis",
            stars=1045,
            pulls=1_000_321_447,
            description="Bitnami container image for Redis",
            tags=_tags(
                "bitnami/redis",
                ["latest", "8.2", "8.2.1-debian-12-r0", "7.4", "7.4.5-debian-12-r3"],
                ("amd64", "arm64"),
                size=61_200_000,
            ),
        ),
        hub_repo(
            "redis/redis-stack",
            stars=412,
            pulls=98_765_432,
            description="redis-stack installs a Redis server with additional database capabilities and"
            " the RedisInsight.",
            tags=_tags(
                "redis/redis-stack", ["latest", "7.4.0-v6", "7.2.0-v18"], ("amd64", "arm64"), size=182_000_000
            ),
        ),
    ]
    # Interleave the named repos with generated ones; big-star generated repos at fixed slots.
    big_slots = {
        19: 1830,
        26: 1004,
        31: 4100,
        37: 1111,
        42: 2750,
        48: 1000,
        53: 1499,
        57: 3020,
        60: 1200,
        62: 1650,
    }
    named = iter(_REDIS_NAMED)
    for idx in range(3, 63):
        if idx in big_slots:
            n = idx
            out.append(
                hub_repo(
                    f"team{n}/redis-ha-{n}",
                    stars=big_slots[idx],
                    pulls=5_000_000 + n * 123_457,
                    description=f"Highly available Redis #{n}: sentinel + failover, production ready"
                    + ("\nSee https://example.com/docs" if n % 2 else ""),
                    automated=n % 3 == 0,
                )
            )
            continue
        entry = next(named, None)
        if entry is not None:
            name, stars, desc = entry
            out.append(hub_repo(name, stars=stars, pulls=stars * 91_733 + 1_000, description=desc))
        else:
            n = idx
            stars = (n * 37) % 400 + (n % 5)
            desc = f"redis {n} image" if n % 4 else f"Custom Redis build {n}\nwith TLS\nand modules"
            out.append(
                hub_repo(f"user{n:03d}/redis-{n}", stars=stars, pulls=stars * 1_337 + n, description=desc)
            )
    return out


def default_dataset() -> list[dict[str, Any]]:
    """A fresh copy of the default dataset (63 redis-ish repos, nginx, ubuntu, alpine, openresty)."""
    data = _redis_entries()
    data += [
        hub_repo(
            "nginx",
            stars=21318,
            pulls=13_114_222_271,
            description="Official build of Nginx.",
            tags=_tags(
                "library/nginx",
                [
                    "latest",
                    "mainline",
                    "1.29",
                    "1.29.1",
                    "stable",
                    "1.28",
                    "1.28.0",
                    "alpine",
                    "1.29-alpine",
                    "alpine-slim",
                    "perl",
                    "1.28-alpine",
                ],
                _WIDE,
                size=72_100_000,
            ),
        ),
        hub_repo(
            "bitnami/nginx", stars=201, pulls=450_000_000, description="Bitnami container image for NGINX"
        ),
        hub_repo(
            "nginx/nginx-ingress",
            stars=98,
            pulls=1_200_000_000,
            description="NGINX Ingress Controller for Kubernetes",
        ),
        hub_repo(
            "nginxinc/nginx-unprivileged",
            stars=160,
            pulls=800_000_000,
            description="Unprivileged NGINX Dockerfiles",
        ),
        hub_repo(
            "ubuntu",
            stars=17000,
            pulls=2_100_000_000,
            description="Ubuntu is a Debian-based Linux operating system based on free software.",
            tags=_tags(
                "library/ubuntu",
                ["latest", "24.04", "noble", "22.04", "jammy", "25.10", "rolling"],
                ("amd64", "arm64", "arm/v7", "ppc64le", "s390x", "riscv64"),
                size=29_700_000,
            ),
        ),
        hub_repo(
            "alpine",
            stars=11000,
            pulls=6_900_000_000,
            description="A minimal Docker image based on Alpine Linux with a complete package index and"
            " only 5 MB in size!",
            tags=_tags(
                "library/alpine", ["latest", "3.22", "3.22.1", "3.21", "3.20", "edge"], _WIDE, size=3_800_000
            ),
        ),
        hub_repo(
            "openresty/openresty",
            stars=560,
            pulls=150_000_000,
            description="OpenResty is a dynamic web platform based on NGINX and LuaJIT.",
            tags=_tags(
                "openresty/openresty",
                ["latest", "alpine", "1.27.1.2-alpine", "bookworm"],
                ("amd64",),
                size=45_000_000,
            ),
        ),
    ]
    return data


@dataclass
class HubRequest:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    at: float
    status: int = 0


@dataclass
class _HubFault:
    status: int
    retry_after_ts: int | None
    path: str | None


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    hub: FakeHub


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        self.server.hub._handle(self)

    def do_HEAD(self) -> None:
        self.server.hub._handle(self)

    def log_message(self, format: str, *args: Any) -> None:
        return


def _error(message: str, **errinfo: Any) -> dict[str, Any]:
    return {"message": message, "errinfo": errinfo}


class FakeHub:
    """Fake Docker Hub v2 API on 127.0.0.1:0. ``FakeHub(dataset=[hub_repo(...), ...])``."""

    def __init__(self, dataset: list[dict[str, Any]] | None = None) -> None:
        data = default_dataset() if dataset is None else dataset
        self._repos: list[dict[str, Any]] = []
        self._tags: dict[str, list[dict[str, Any]]] = {}
        for entry in data:
            e = dict(entry)
            tags = e.pop("tags", None)
            name = str(e["repo_name"])
            full = name if "/" in name else f"library/{name}"
            if tags is None:
                tags = ["latest"]
            self._tags[full] = [hub_tag(full, t) if isinstance(t, str) else t for t in tags]
            self._repos.append(e)
        self._lock = threading.Lock()
        self._faults: deque[_HubFault] = deque()
        self._stall = 0.0
        self._stall_times: int | None = None
        self._stopping = threading.Event()
        self._http: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._remaining = 180
        #: Every request received (path, query, headers, time, answered status).
        self.requests: list[HubRequest] = []

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeHub:
        if self._http is None:
            self._stopping.clear()
            http = _HTTPServer(("127.0.0.1", 0), _Handler)
            http.hub = self
            self._http = http
            self._thread = threading.Thread(
                target=http.serve_forever, kwargs={"poll_interval": 0.05}, name="FakeHub", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (stalled requests are released). Later requests get connection refused."""
        self._stopping.set()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._http is None:
            raise RuntimeError("FakeHub is not started")
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    # ------------------------------------------------------------------ faults

    def fail(
        self, status: int = 500, *, retry_after_ts: int | None = None, times: int = 1, path: str | None = None
    ) -> None:
        """Answer the next ``times`` requests (whose path contains ``path``, if given) with ``status``.

        429 sets ``X-Retry-After: <unix ts>`` (Hub's header; default now+2) plus ``Retry-After``
        seconds and ``X-RateLimit-Remaining: 0``. 503 answers an HTML body (as a proxy would);
        other statuses a Hub-like JSON error.
        """
        if status == 429 and retry_after_ts is None:
            retry_after_ts = int(time.time()) + 2
        with self._lock:
            for _ in range(times):
                self._faults.append(_HubFault(status, retry_after_ts, path))

    def stall(self, seconds: float, times: int | None = None) -> None:
        """Delay responses by ``seconds`` (the next ``times`` requests, or all until ``stall(0)``)."""
        with self._lock:
            self._stall = seconds
            self._stall_times = times

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._stall, self._stall_times = 0.0, None

    # ------------------------------------------------------------------ HTTP

    def _handle(self, h: _Handler) -> None:
        split = urlsplit(h.path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        req = HubRequest(split.path, query, {k.lower(): v for k, v in h.headers.items()}, time.time())
        with self._lock:
            self.requests.append(req)
            delay = self._stall
            if delay and self._stall_times is not None:
                self._stall_times -= 1
                if self._stall_times <= 0:
                    self._stall, self._stall_times = 0.0, None
            fault = None
            for f in self._faults:
                if f.path is None or f.path in split.path:
                    fault = f
                    break
            if fault is not None:
                self._faults.remove(fault)
        if delay:
            self._stopping.wait(delay)

        headers: dict[str, str] = {}
        if fault is not None:
            status, body, ctype = self._fault_response(fault, headers)
        else:
            status, payload = self._route(split.path, query)
            body, ctype = json.dumps(payload).encode(), "application/json"
            with self._lock:
                # one request fewer left in the window; a new window starts instead of reaching 0
                self._remaining = self._remaining - 1 if self._remaining > 1 else 180
                remaining = self._remaining
            headers.update(
                {
                    "X-RateLimit-Limit": "180",
                    "X-RateLimit-Remaining": str(remaining),
                    "X-RateLimit-Reset": str(int(time.time()) + 3600),
                }
            )
        req.status = status
        try:
            h.send_response(status)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(body)))
            for k, v in headers.items():
                h.send_header(k, v)
            h.end_headers()
            if h.command != "HEAD":
                h.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    @staticmethod
    def _fault_response(fault: _HubFault, headers: dict[str, str]) -> tuple[int, bytes, str]:
        if fault.status == 429:
            ts = int(fault.retry_after_ts or time.time())
            headers.update(
                {
                    "X-Retry-After": str(ts),
                    "Retry-After": str(max(0, math.ceil(ts - time.time()))),
                    "X-RateLimit-Limit": "180",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": str(ts),
                }
            )
            return 429, json.dumps(_error("Too Many Requests")).encode(), "application/json"
        if fault.status == 503:
            html = b"<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>\n"
            return 503, html, "text/html"
        msg = "internal server error" if fault.status >= 500 else f"httperror {fault.status}"
        return fault.status, json.dumps(_error(msg)).encode(), "application/json"

    def _route(self, path: str, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        parts = [p for p in path.split("/") if p]
        # /v2/search/repositories[/]
        if parts == ["v2", "search", "repositories"]:
            return self._search(query)
        # /v2/namespaces/{ns}/repositories/{repo}/tags[/{tag}]
        if (
            len(parts) in (6, 7)
            and parts[:2] == ["v2", "namespaces"]
            and parts[3] == "repositories"
            and parts[5] == "tags"
        ):
            return self._tags_endpoint(path, parts[2], parts[4], parts[6] if len(parts) == 7 else None, query)
        # /v2/repositories/{ns}/{repo}/tags[/][{tag}]
        if len(parts) in (5, 6) and parts[:2] == ["v2", "repositories"] and parts[4] == "tags":
            return self._tags_endpoint(path, parts[2], parts[3], parts[5] if len(parts) == 6 else None, query)
        return 404, _error("404 page not found", path=path)

    @staticmethod
    def _page_params(query: dict[str, str], default_size: int) -> tuple[int, int] | dict[str, Any]:
        try:
            page = int(query.get("page") or 1)
            size = int(query.get("page_size") or default_size)
        except ValueError:
            return _error(
                "invalid pagination parameters", page=query.get("page"), page_size=query.get("page_size")
            )
        if size < 1 or size > MAX_PAGE_SIZE:
            return _error(f"page_size must be between 1 and {MAX_PAGE_SIZE}", page_size=size)
        if page < 1:
            return _error("page must be a positive integer", page=page)
        return page, size

    def _page_url(self, path: str, query: dict[str, str], page: int, size: int) -> str:
        q = dict(query)
        q["page"] = str(page)
        q["page_size"] = str(size)
        return f"{self.url}{path}?{urlencode(q, quote_via=quote)}"

    def _paginate(
        self,
        path: str,
        query: dict[str, str],
        items: list[dict[str, Any]],
        default_size: int,
        absent: str | None,
    ) -> tuple[int, dict[str, Any]]:
        params = self._page_params(query, default_size)
        if isinstance(params, dict):
            return 400, params
        page, size = params
        pages = max(1, math.ceil(len(items) / size))
        if page > pages:
            return 404, {"detail": "Invalid page.", "message": "page not found", "errinfo": {"page": page}}
        start = (page - 1) * size
        return 200, {
            "count": len(items),
            "next": self._page_url(path, query, page + 1, size) if page < pages else absent,
            "previous": self._page_url(path, query, page - 1, size) if page > 1 else absent,
            "results": [dict(i) for i in items[start : start + size]],
        }

    def _search(self, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        q = query.get("query", "").lower()
        items = [r for r in self._repos if q in str(r["repo_name"]).lower()]
        return self._paginate("/v2/search/repositories/", query, items, SEARCH_DEFAULT_PAGE_SIZE, "")

    def _tags_endpoint(
        self, path: str, ns: str, repo: str, tag: str | None, query: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        tags = self._tags.get(f"{ns}/{repo}")
        if tags is None:
            return 404, _error("object not found", namespace=ns, repository=repo)
        if tag is not None:
            for t in tags:
                if t["name"] == tag:
                    return 200, dict(t)
            return 404, _error(
                f"httperror 404: tag '{tag}' not found", namespace=ns, repository=repo, tag=tag
            )
        items = list(tags)
        if query.get("name"):
            items = [t for t in items if query["name"] in t["name"]]
        ordering = query.get("ordering", "")
        if ordering in ("last_updated", "-last_updated"):
            items.sort(key=lambda t: str(t["last_updated"]), reverse=True)
        elif ordering == "name":
            items.sort(key=lambda t: str(t["name"]))
        return self._paginate(path, query, items, TAGS_DEFAULT_PAGE_SIZE, None)


@contextmanager
def hub_for(services: Services, dataset: list[dict[str, Any]], path: str = "") -> Iterator[FakeHub]:
    """A fake Hub with `dataset`, which the bot's services use until the block ends."""
    with FakeHub(dataset=dataset) as fake:
        original = services.settings
        services.settings = original.model_copy(update={"hub_url": fake.url + path})
        try:
            yield fake
        finally:
            services.settings = original
