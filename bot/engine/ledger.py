"""When each image was last used: a persistent ledger fed by the engine's event stream.

The engine has no "last used" for images (moby#4237), so, like docuum, the bot follows
`/events`: every container event touches the container's image, every image event (pull,
tag, untag, load, ...) touches the image, and a delete forgets it. Events are only seen
while the bot runs, so each cleanup run also seeds images it has never seen (with their
Created time, as docuum's first run does) and refreshes the images containers use now.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import docker
from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from bot.engine.hosts import DockerHost
from bot.engine.images import ImageIndex, NoSuchImage, Summary, list_images
from bot.errors import UserError
from bot.state.tables import image_last_use

log = logging.getLogger("dockerbot.ledger")


_CHUNK = 500  # rows per multi-row statement (SQLite caps bound variables)
THROTTLE_SECONDS = 60.0  # health checks and restarts fire often: one write a minute per image is plenty
_FULL_ID_LEN = len("sha256:") + 64


def _chunks(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), _CHUNK):
        yield rows[start : start + _CHUNK]


class Ledger:
    def __init__(self, engine: Engine, *, throttle: float = THROTTLE_SECONDS) -> None:
        self.engine = engine
        self.throttle = throttle
        self._written: dict[tuple[str, str], float] = {}  # what this process last wrote, for the throttle
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._streams: dict[str, Any] = {}  # host name -> the open events stream, closed by stop()
        self._lock = threading.Lock()

    # --- reading -------------------------------------------------------------------------------
    def last_used(self, host: str, image_id: str) -> float | None:
        with self.engine.connect() as conn:
            return conn.execute(
                select(image_last_use.c.last_used)
                .where(image_last_use.c.host == host)
                .where(image_last_use.c.image_id == image_id)
            ).scalar()

    def all_last_used(self, host: str) -> dict[str, tuple[float, str]]:
        """Image ID -> (last used, source) for every image the ledger knows on `host`: one query."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(image_last_use.c.image_id, image_last_use.c.last_used, image_last_use.c.source).where(
                    image_last_use.c.host == host
                )
            ).all()
        return {r.image_id: (r.last_used, r.source) for r in rows}

    # --- writing -------------------------------------------------------------------------------
    def touch(self, host: str, image_id: str, when: float, source: str) -> None:
        """Record a use; an older timestamp never overwrites a newer one."""
        self.touch_many(host, {image_id: when}, source)

    def touch_many(self, host: str, uses: dict[str, float], source: str) -> None:
        rows = [
            {"host": host, "image_id": i, "last_used": float(w), "source": source[:64]}
            for i, w in uses.items()
        ]
        if rows:
            with self.engine.begin() as conn:
                self._upsert(conn, rows, keep_newer=True)

    def seed(self, host: str, images: Iterable[Summary]) -> int:
        """First sight of an image: its last use is its Created time (docuum's first run). Returns how
        many were new. Known images keep what the ledger says."""
        rows = [
            {
                "host": host,
                "image_id": s["Id"],
                "last_used": float(s.get("Created") or 0),
                "source": "created",
            }
            for s in images
        ]
        if not rows:
            return 0
        known = set(self.all_last_used(host))
        new = [r for r in rows if r["image_id"] not in known]
        if new:
            with self.engine.begin() as conn:
                self._upsert(conn, new, keep_newer=False)
        return len(new)

    def refresh_in_use(self, host: str, in_use_ids: Iterable[str], now: float) -> None:
        """Images containers use right now count as used now."""
        self.touch_many(host, dict.fromkeys(in_use_ids, now), "in use")

    def forget(self, host: str, image_id: str) -> None:
        self.forget_many(host, [image_id])

    def forget_many(self, host: str, image_ids: Iterable[str]) -> None:
        """Images that are gone: a later image with the same ID starts afresh."""
        ids = list(image_ids)
        with self.engine.begin() as conn:
            for start in range(0, len(ids), _CHUNK):
                conn.execute(
                    delete(image_last_use)
                    .where(image_last_use.c.host == host)
                    .where(image_last_use.c.image_id.in_(ids[start : start + _CHUNK]))
                )
        for image_id in ids:
            self._written.pop((host, image_id), None)

    def _upsert(self, conn: Connection, rows: list[dict[str, Any]], *, keep_newer: bool) -> None:
        """Insert; on an existing row either keep the newer timestamp or leave it alone (seed)."""
        name = conn.dialect.name
        if name in ("sqlite", "postgresql"):
            dialect_insert = sqlite.insert if name == "sqlite" else postgresql.insert
            for chunk in _chunks(rows):
                stmt = dialect_insert(image_last_use).values(chunk)
                keys = [image_last_use.c.host, image_last_use.c.image_id]
                if keep_newer:
                    stmt = stmt.on_conflict_do_update(
                        index_elements=keys,
                        set_={"last_used": stmt.excluded.last_used, "source": stmt.excluded.source},
                        where=image_last_use.c.last_used < stmt.excluded.last_used,
                    )
                else:
                    stmt = stmt.on_conflict_do_nothing(index_elements=keys)
                conn.execute(stmt)
            return
        for row in rows:  # any other database: row by row, still in one transaction
            key = (image_last_use.c.host == row["host"]) & (image_last_use.c.image_id == row["image_id"])
            current = conn.execute(select(image_last_use.c.last_used).where(key)).scalar()
            if current is None:
                conn.execute(insert(image_last_use).values(**row))
            elif keep_newer and current < row["last_used"]:
                conn.execute(update(image_last_use).where(key).values(**row))

    # --- watching the engine -------------------------------------------------------------------
    def start_watching(self, hosts: Iterable[DockerHost]) -> None:
        """One daemon thread per host following its event stream until stop()."""
        if self._stop.is_set() and not self._threads:  # stopped before: watch again
            self._stop = threading.Event()
        for host in hosts:
            thread = threading.Thread(
                target=self.watch, args=(host, self._stop), name=f"ledger-{host.name}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop following; waits at most `timeout` in all. A stream over ssh cannot be cancelled
        (docker-py), so its thread, a daemon, may still be reading when this returns."""
        self._stop.set()
        with self._lock:
            streams = list(self._streams.values())
        for stream in streams:
            _close(stream)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads.clear()

    def watch(self, host: DockerHost, stop: threading.Event) -> None:
        """Follow the engine's events; reconnect with backoff when it goes away, resuming where the
        stream broke off (the engine keeps recent events), until `stop` is set."""
        backoff = 0.5
        since: int | None = None
        while not stop.is_set():
            stream = None
            try:
                api = host.api
                resolver = _Resolver(api)
                opened = int(time.time())
                stream = api.events(since=since, decode=True, filters={"type": ["container", "image"]})
                with self._lock:
                    self._streams[host.name] = stream
                if stop.is_set():
                    break
                since = since or opened
                if backoff > 0.5:
                    log.info("following events on %s again", host.name)
                backoff = 0.5
                for event in stream:
                    since = max(since, int(event.get("time") or 0))
                    try:
                        self.handle_event(host.name, event, resolver)
                    except docker.errors.APIError as error:  # one odd event never ends the watch
                        log.debug("ignored event %s: %s", event.get("Action"), error)
            except Exception as error:  # noqa: BLE001 - engine down, stream cut, database busy: retry
                if not stop.is_set():
                    log.warning(
                        "events from %s interrupted (%s); retrying in %.1fs", host.name, error, backoff
                    )
            finally:
                with self._lock:
                    self._streams.pop(host.name, None)
                if stream is not None:
                    _close(stream)
            if stop.wait(backoff):
                break
            backoff = min(backoff * 2, 30.0)

    def handle_event(self, host: str, event: dict[str, Any], resolver: _Resolver) -> None:
        kind = event.get("Type")
        action = str(event.get("Action") or event.get("status") or "")
        actor = event.get("Actor") or {}
        attributes = actor.get("Attributes") or {}
        subject = str(actor.get("ID") or event.get("id") or "")
        when = (event.get("timeNano") or 0) / 1e9 or float(event.get("time") or 0) or time.time()
        if kind == "container":
            image_id = resolver.container_image(subject, attributes.get("image", ""), action)
        elif kind == "image":
            if action == "delete":
                if subject.startswith("sha256:"):
                    self.forget(host, subject)
                resolver.index = None
                return
            image_id = resolver.image(subject)
        else:
            return
        if image_id:
            self._touch_throttled(host, image_id, when, f"{kind} {action.split(':')[0]}")

    def _touch_throttled(self, host: str, image_id: str, when: float, source: str) -> None:
        key = (host, image_id)
        if when - self._written.get(key, float("-inf")) < self.throttle:
            return
        self.touch(host, image_id, when, source)
        self._written[key] = when


def _close(stream: Any) -> None:
    with contextlib.suppress(Exception):  # closing a broken stream is best effort
        stream.close()


class _Resolver:
    """Image IDs for event subjects, from cached listings refreshed on a miss (never one inspect per
    event): a container's ImageID from the containers list, a reference through an ImageIndex."""

    REFRESH_EVERY = 1.0  # a burst of events for unknown subjects costs one listing a second at most

    def __init__(self, api: docker.APIClient) -> None:
        self.api = api
        self.index: ImageIndex | None = None
        self.containers: dict[str, str] = {}
        self._listed: dict[str, float] = {}

    def _due(self, what: str) -> bool:
        """True (and the clock restarted) when `what` was last listed long enough ago."""
        now = time.monotonic()
        if now - self._listed.get(what, float("-inf")) < self.REFRESH_EVERY:
            return False
        self._listed[what] = now
        return True

    def container_image(self, container_id: str, image_ref: str, action: str) -> str | None:
        image_id = self.containers.get(container_id)
        if image_id is None and action != "destroy" and self._due("containers"):
            listed = self.api.containers(all=True)
            self.containers = {c["Id"]: c["ImageID"] for c in listed if c.get("ImageID")}
            image_id = self.containers.get(container_id)
        if action == "destroy":
            self.containers.pop(container_id, None)
        return image_id or (self.image(image_ref) if image_ref else None)

    def image(self, ref: str) -> str | None:
        if ref.startswith("sha256:") and len(ref) == _FULL_ID_LEN:
            return ref
        found = self._lookup(ref) if self.index is not None else None
        if found is None and self._due("images"):
            self.index = ImageIndex(list_images(self.api, all=True))
            found = self._lookup(ref)
        return found

    def _lookup(self, ref: str) -> str | None:
        assert self.index is not None
        try:
            return self.index.resolve(ref)["Id"]
        except (NoSuchImage, UserError):  # unknown, or an ambiguous prefix: not worth a guess
            return None
