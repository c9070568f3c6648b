"""What a registry says a tag points at now, without pulling: the distribution API's
`HEAD /v2/<name>/manifests/<tag>` and its `Docker-Content-Digest` header.

- A HEAD of a manifest does not count against Docker Hub's pull rate limit (a GET does).
- The Accept header names image indexes (OCI) and manifest lists (Docker) first, then single
  manifests: the registry answers with the digest of what the tag points at, which is what an
  engine records as the digest it pulled by (RepoDigests on overlay2; the image ID on the
  containerd store).
- Authentication follows the registry's challenge (`WWW-Authenticate`): `Bearer realm=…,service=…`
  is Docker Hub's token flow (`GET realm?service=…&scope=repository:<name>:pull`, anonymous or with
  the configured credentials); `Basic` sends the configured credentials. Tokens live for one run.
- Docker Hub names (`docker.io/library/ubuntu`) go to `hub_registry_url`
  (`DOCKERBOT_HUB_REGISTRY_URL`, normally https://registry-1.docker.io).

Nothing here raises for a registry's problem: every lookup ends as a `RemoteDigest` whose state
says what happened (current, gone, or unknown and why). Credentials and tokens never leave this
module except in the Authorization header of a request to the registry that asked for them.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import ipaddress
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from bot import metrics
from bot.engine.netcause import network_cause
from bot.engine.pulling import registry_auth
from bot.engine.reference import DEFAULT_DOMAIN, Reference

log = logging.getLogger("dockerbot.registry")

ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
    ]
)
USER_AGENT = "dockerbot"
DEFAULT_HUB_REGISTRY = "https://registry-1.docker.io"
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_CHALLENGE_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^\s,]*))')

CURRENT = "current"  # the registry answered with a digest
GONE = "gone"  # the registry says the tag (or the repository) does not exist
UNKNOWN = "unknown"  # the registry could not tell us: `reason` says why


@dataclass(frozen=True)
class RemoteDigest:
    state: str
    digest: str | None = None
    pushed: float | None = None  # unix time, where the registry says (Last-Modified)
    reason: str = ""  # for UNKNOWN (and GONE): a short phrase for people


@dataclass(frozen=True)
class _Challenge:
    scheme: str  # "bearer" or "basic"
    params: dict[str, str]


class RegistryClient:
    """Digest lookups for one run: a cache per repository:tag, tokens per repository, and at most
    `concurrency` requests in flight (`lookup_many`)."""

    def __init__(
        self,
        *,
        hub_registry_url: str = DEFAULT_HUB_REGISTRY,
        credentials: Mapping[str, Any] | None = None,
        timeout: float = 10.0,
        concurrency: int = 4,
    ) -> None:
        self.hub_registry_url = hub_registry_url.rstrip("/")
        self.credentials = credentials or {}
        self.timeout = timeout
        self.concurrency = max(1, concurrency)
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        self.requests = 0  # manifest requests sent (the cache keeps this to one per repository:tag)
        self._cache: dict[tuple[str, str], RemoteDigest] = {}
        self._tokens: dict[tuple[str, str, str], str] = {}
        self._challenges: dict[str, _Challenge] = {}  # per registry base: what it asked for last
        self._bases: dict[str, str] = {}  # registry domain -> base URL that answered
        self._lock = threading.Lock()

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- API ---------------------------------------------------------------------------------
    def lookup_many(self, refs: Iterable[Reference]) -> dict[tuple[str, str], RemoteDigest]:
        """Every distinct (name, tag) once, `concurrency` at a time: {(ref.name, ref.tag): result}."""
        distinct = {(r.name, r.tag or "latest"): r for r in refs}
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="registry") as pool:
            results = dict(zip(distinct, pool.map(self.lookup, distinct.values()), strict=True))
        return results

    def lookup(self, ref: Reference) -> RemoteDigest:
        key = (ref.name, ref.tag or "latest")
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        try:
            result = self._lookup(ref.domain, ref.path, key[1])
        except requests.exceptions.Timeout:
            result = RemoteDigest(UNKNOWN, reason=f"registry did not answer within {self.timeout:g} s")
        except requests.exceptions.RequestException as error:
            result = RemoteDigest(UNKNOWN, reason=f"registry unreachable ({network_cause(error)})")
        except Exception:  # a registry's odd answer is "unknown", never a failed command
            log.exception("registry lookup of %s failed", ref.familiar())
            result = RemoteDigest(UNKNOWN, reason="registry sent an answer the bot cannot read")
        metrics.REGISTRY_LOOKUPS.labels(result.state).inc()
        with self._lock:
            self._cache[key] = result
        return result

    # --- HTTP --------------------------------------------------------------------------------
    def _bases_for(self, domain: str) -> list[str]:
        if domain == DEFAULT_DOMAIN:
            return [self.hub_registry_url]
        known = self._bases.get(domain)
        if known:
            return [known]
        # Like the engine: loopback registries may speak plain HTTP (tried after HTTPS fails).
        return [f"https://{domain}", f"http://{domain}"] if _is_loopback(domain) else [f"https://{domain}"]

    def _lookup(self, domain: str, path: str, tag: str) -> RemoteDigest:
        bases = self._bases_for(domain)
        for i, base in enumerate(bases):
            try:
                result = self._head(base, domain, path, tag)
            except (requests.exceptions.SSLError, requests.exceptions.ConnectionError):
                if i + 1 < len(bases):
                    continue
                raise
            with self._lock:
                self._bases.setdefault(domain, base)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _head(self, base: str, domain: str, path: str, tag: str) -> RemoteDigest:
        url = f"{base}/v2/{path}/manifests/{tag}"
        creds = registry_auth(_CredentialTable(self.credentials), domain)
        challenge = self._challenges.get(base)
        auth = self._authorization(challenge, path, creds) if challenge else None
        if isinstance(auth, RemoteDigest):
            return auth
        response = self._send("HEAD", url, auth)
        if response.status_code == 401:
            challenge = _parse_challenge(response.headers.get("WWW-Authenticate", ""))
            if challenge is None:
                return RemoteDigest(UNKNOWN, reason="registry refused access and says not how to log in")
            self._challenges[base] = challenge
            auth = self._authorization(challenge, path, creds)
            if auth is None:
                return RemoteDigest(UNKNOWN, reason="registry wants credentials; the bot has none for it")
            if isinstance(auth, RemoteDigest):
                return auth
            response = self._send("HEAD", url, auth)
            if response.status_code == 401:
                if creds:
                    return RemoteDigest(UNKNOWN, reason="registry refused the bot's credentials")
                # Docker Hub answers 401 for a repository that does not exist or is private.
                return RemoteDigest(
                    UNKNOWN, reason="registry refused anonymous access (private or missing repository)"
                )
        failed = _status_result(response.status_code)
        if failed is not None:
            return failed
        pushed = _http_date(response.headers.get("Last-Modified"))
        digest = (response.headers.get("Docker-Content-Digest") or "").strip()
        if _DIGEST.match(digest):
            return RemoteDigest(CURRENT, digest=digest, pushed=pushed)
        # A registry that does not send the header on HEAD: the digest is that of the body (a GET,
        # which Docker Hub would count as a pull; Hub always sends the header).
        body = self._send("GET", url, auth)
        failed = _status_result(body.status_code)
        if failed is not None:
            return failed
        header = (body.headers.get("Docker-Content-Digest") or "").strip()
        digest = header if _DIGEST.match(header) else "sha256:" + hashlib.sha256(body.content).hexdigest()
        return RemoteDigest(CURRENT, digest=digest, pushed=pushed)

    def _send(self, method: str, url: str, auth: str | None) -> requests.Response:
        headers = {"Accept": ACCEPT}
        if auth:
            headers["Authorization"] = auth
        with self._lock:
            self.requests += 1
        response = self.session.request(
            method, url, headers=headers, timeout=self.timeout, allow_redirects=True
        )
        response.close()
        return response

    def _authorization(
        self, challenge: _Challenge, path: str, creds: dict[str, str] | None
    ) -> str | RemoteDigest | None:
        """The Authorization header for `challenge`; None when there is no way to answer it, or the
        token endpoint's failure as a result."""
        if challenge.scheme == "basic":
            if not creds:
                return None
            pair = f"{creds['username']}:{creds['password']}".encode()
            return "Basic " + base64.b64encode(pair).decode("ascii")
        realm = challenge.params.get("realm", "")
        if not realm.startswith(("https://", "http://")):
            return RemoteDigest(UNKNOWN, reason="registry's token service is not a web address")
        service = challenge.params.get("service", "")
        scope = f"repository:{path}:pull"
        key = (realm, scope, creds["username"] if creds else "")
        with self._lock:
            token = self._tokens.get(key)
        if token is None:
            params = {"scope": scope, **({"service": service} if service else {})}
            basic = (creds["username"], creds["password"]) if creds else None
            try:
                response = self.session.get(
                    realm,
                    params=params,
                    auth=basic,
                    timeout=self.timeout,
                    headers={"Accept": "application/json"},
                )
            except requests.exceptions.RequestException as error:
                return RemoteDigest(
                    UNKNOWN, reason=f"registry's token service unreachable ({network_cause(error)})"
                )
            with response:
                if response.status_code == 429:
                    return RemoteDigest(UNKNOWN, reason="registry rate limit reached (429)")
                if response.status_code in (401, 403):
                    why = "refused the bot's credentials" if creds else "refused anonymous access"
                    return RemoteDigest(UNKNOWN, reason=f"registry's token service {why}")
                if response.status_code != 200:
                    return RemoteDigest(
                        UNKNOWN, reason=f"registry's token service answered {response.status_code}"
                    )
                try:
                    data = response.json()
                except ValueError:
                    data = None
            token = (data.get("token") or data.get("access_token")) if isinstance(data, dict) else None
            if not isinstance(token, str) or not token:
                return RemoteDigest(UNKNOWN, reason="registry's token service sent no token")
            with self._lock:
                self._tokens[key] = token
        return f"Bearer {token}"


class _CredentialTable:
    """`registry_auth` reads a settings-like object; this wraps a plain table."""

    def __init__(self, table: Mapping[str, Any]) -> None:
        self.registry_auth = table


def _parse_challenge(header: str) -> _Challenge | None:
    """`Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="…"` or
    `Basic realm="…"` (RFC 7235; only the first challenge is read)."""
    scheme, _, rest = header.strip().partition(" ")
    scheme = scheme.lower()
    if scheme not in ("bearer", "basic"):
        return None
    params = {
        m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
        for m in _CHALLENGE_PARAM.finditer(rest)
    }
    return _Challenge(scheme, params)


def _status_result(status: int) -> RemoteDigest | None:
    """What a manifest request's status means, unless it is 200."""
    if status == 200:
        return None
    if status == 404:
        return RemoteDigest(GONE, reason="the registry has no such tag")
    if status == 429:
        return RemoteDigest(UNKNOWN, reason="registry rate limit reached (429)")
    if status == 403:
        return RemoteDigest(UNKNOWN, reason="registry denied access (403)")
    if status >= 500:
        return RemoteDigest(UNKNOWN, reason=f"registry error ({status})")
    return RemoteDigest(UNKNOWN, reason=f"registry answered {status}")


def _is_loopback(domain: str) -> bool:
    host = urlsplit(f"//{domain}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
