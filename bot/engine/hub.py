"""A small Docker Hub HTTP client: repository search and tag listing.

Hub's v2 API (GET /v2/search/repositories/, which the Hub website uses, and the documented
GET /v2/namespaces/{ns}/repositories/{repo}/tags), not the engine's /images/search: Hub
gives pull counts, and paging lets filters apply before the limit is cut (the
engine filters only the first `limit` results, so `--filter stars=N` can come up short).
"""

from __future__ import annotations

import email.utils
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import requests

from bot.engine.netcause import network_cause
from bot.errors import UserError

DEFAULT_TIMEOUT = 10.0  # seconds per HTTP request; settings may override via `hub_timeout`
PAGE_SIZE = 100  # Hub's largest page
MAX_PAGES = 10  # filtered search reads at most this many pages (1,000 results)
USER_AGENT = "dockerbot"


class HubError(UserError):
    """Docker Hub failed or refused; the text is a short reply for the user."""


@dataclass(frozen=True)
class SearchResult:
    name: str  # familiar: "redis" for official images, "bitnami/redis" otherwise
    description: str
    stars: int
    pulls: int
    official: bool


@dataclass(frozen=True)
class TagInfo:
    name: str
    size: int  # compressed bytes (Hub's full_size); not what `docker images` shows
    last_pushed: float | None  # unix time
    platforms: tuple[str, ...]  # "amd64", "arm64/v8", "windows/amd64"; attestations left out


class HubClient:
    def __init__(self, base_url: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        self.session.headers["Accept"] = "application/json"

    # --- API ---------------------------------------------------------------------------------
    def search(
        self,
        term: str,
        *,
        limit: int,
        is_official: bool | None = None,
        min_stars: int | None = None,
    ) -> list[SearchResult]:
        """Up to `limit` results in Hub's order, filters applied before the cut.

        Callers validate `term` and `limit` first (see handlers/search.py); this only fetches.
        """
        filtered = is_official is not None or bool(min_stars)
        page_size = PAGE_SIZE if filtered else limit
        found: list[SearchResult] = []
        for page in range(1, MAX_PAGES + 1):
            data = self._get(
                "/v2/search/repositories/",
                {"query": term, "page": page, "page_size": page_size},
                what="search",
            )
            results = data.get("results") or []
            for item in results:
                result = _search_result(item)
                if is_official is not None and result.official != is_official:
                    continue
                if min_stars and result.stars < min_stars:
                    continue
                found.append(result)
                if len(found) == limit:
                    return found
            if not filtered or not results or not data.get("next"):
                break
        return found

    def tags(self, repository: str, limit: int) -> list[TagInfo]:
        """The most recently pushed tags of `repository` ("redis", "bitnami/redis")."""
        namespace, _, name = repository.rpartition("/")
        path = f"/v2/repositories/{quote(namespace or 'library', safe='')}/{quote(name, safe='')}/tags/"
        data = self._get(
            path,
            {"page_size": limit, "ordering": "last_updated"},
            what="tags",
            not_found=f"Docker Hub has no public repository `{repository}`.",
        )
        return [_tag_info(item) for item in (data.get("results") or [])[:limit]]

    def close(self) -> None:
        self.session.close()

    # --- HTTP --------------------------------------------------------------------------------
    def _get(self, path: str, params: dict[str, Any], *, what: str, not_found: str | None = None) -> Any:
        try:
            resp = self.session.get(self.base_url + path, params=params, timeout=self.timeout)
        except requests.exceptions.Timeout:
            raise HubError(f"Docker Hub did not answer within {self.timeout:g} s.") from None
        except requests.exceptions.ConnectionError as error:
            raise HubError(
                f"Cannot reach Docker Hub at {self.display_url}: {network_cause(error)}."
            ) from None
        except requests.exceptions.RequestException as error:
            raise HubError(
                f"Cannot reach Docker Hub at {self.display_url}: {type(error).__name__}."
            ) from None
        with resp:
            status = resp.status_code
            if status == 429:
                raise HubError(rate_limit_text(resp.headers))
            if status >= 500:
                raise HubError(f"Docker Hub answered {status}; try again in a minute.")
            if status == 404 and not_found:
                raise HubError(not_found)
            if status != 200:
                raise HubError(f"Docker Hub refused the {what} request ({status}{_reason(resp)}).")
            try:
                data = resp.json()
            except ValueError:
                data = None
        if not isinstance(data, dict):
            raise HubError(f"Docker Hub sent a {what} response the bot cannot read.")
        return data

    @property
    def display_url(self) -> str:
        """The base URL without any user:password@ part, for messages."""
        parts = urlsplit(self.base_url)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@lru_cache(maxsize=8)
def client_for(base_url: str, timeout: float = DEFAULT_TIMEOUT) -> HubClient:
    """One client (and connection pool) per Hub URL, shared by the workers."""
    return HubClient(base_url, timeout)


# --- errors ------------------------------------------------------------------------------------


def _reason(resp: requests.Response) -> str:
    """Hub's own short message, if it sent one (`{"message": "..."}` or `{"detail": "..."}`)."""
    try:
        body = resp.json()
    except ValueError:
        return ""
    if isinstance(body, dict):
        text = body.get("message") or body.get("detail") or ""
        if isinstance(text, str) and text.strip():
            return ": " + " ".join(text.split())[:200]
    return ""


def retry_at(headers: Any, now: float) -> float | None:
    """When Hub says to come back: `X-Retry-After` (unix time, Hub's own) or `Retry-After`
    (seconds or an HTTP date, RFC 9110)."""
    value = (headers.get("X-Retry-After") or "").strip()
    if value.isdigit():
        return float(value)
    value = (headers.get("Retry-After") or "").strip()
    if value.isdigit():
        return now + int(value)
    if value:
        try:
            return email.utils.parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError):
            return None
    return None


def rate_limit_text(headers: Any, now: float | None = None) -> str:
    now = time.time() if now is None else now
    when = retry_at(headers, now)
    if when is None or when <= now:
        return "Docker Hub is rate-limiting us; try again in a minute."
    moment = datetime.fromtimestamp(when, UTC)
    clock = moment.strftime("%H:%M UTC") if when - now < 20 * 3600 else moment.strftime("%Y-%m-%d %H:%M UTC")
    return f"Docker Hub is rate-limiting us; try again after {clock} (in {_wait(when - now)})."


def _wait(seconds: float) -> str:
    if seconds < 60:
        return f"{math.ceil(seconds)} s"
    minutes = math.ceil(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


# --- decoding ----------------------------------------------------------------------------------
def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _search_result(item: dict[str, Any]) -> SearchResult:
    name = str(item.get("repo_name") or "")
    return SearchResult(
        name=name.removeprefix("library/"),  # official images go by their familiar name
        description=str(item.get("short_description") or ""),
        stars=_int(item.get("star_count")),
        pulls=_int(item.get("pull_count")),
        official=bool(item.get("is_official")),
    )


def _timestamp(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def _platform(image: dict[str, Any]) -> str | None:
    arch, os_ = image.get("architecture") or "", image.get("os") or ""
    if arch in ("", "unknown") or os_ == "unknown":  # attestation manifests, not runnable images
        return None
    text = f"{arch}/{image['variant']}" if image.get("variant") else arch
    return text if os_ in ("", "linux") else f"{os_}/{text}"


def _tag_info(item: dict[str, Any]) -> TagInfo:
    platforms: list[str] = []
    for image in item.get("images") or []:
        platform = _platform(image) if isinstance(image, dict) else None
        if platform and platform not in platforms:
            platforms.append(platform)
    return TagInfo(
        name=str(item.get("name") or ""),
        size=_int(item.get("full_size")),
        last_pushed=_timestamp(item.get("tag_last_pushed")) or _timestamp(item.get("last_updated")),
        platforms=tuple(platforms),
    )
