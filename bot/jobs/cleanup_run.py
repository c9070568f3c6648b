"""A run: remove exactly a plan's candidates, each checked again just before, tag by tag and
never forced, so the engine's own conflicts protect anything that became used meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import docker

from bot.engine.diskusage import images_usage
from bot.engine.hosts import connection_cause, connection_errors
from bot.engine.images import ImageIndex, Summary, list_images
from bot.engine.removal import Seen, explain, recheck, remove
from bot.jobs.cleanup_plan import Candidate, CleanupPlan, containers_by_image
from bot.render.formatting import short_id

log = logging.getLogger("dockerbot.cleanup")


@dataclass
class Removed:
    image_id: str
    tags: list[str]
    size: int
    rule: str
    lines: list[str]  # what the engine said: Untagged: … / Deleted: …


@dataclass
class Skipped:
    image_id: str
    tags: list[str]
    size: int
    category: str  # the plan's kept categories, and: gone, changed, conflict, error, not attempted
    reason: str


def _skip(cand: Candidate, category: str, reason: str) -> Skipped:
    return Skipped(cand.image_id, cand.tags, cand.size, category, reason)


@dataclass
class CleanupResult:
    host: str
    policy_text: str
    removed: list[Removed] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    before: int | None = None  # image bytes on disk before and after (df)
    after: int | None = None
    build_cache_reclaimed: int | None = None
    duration: float = 0.0
    unmatched: int = 0
    notes: list[str] = field(default_factory=list)
    ran: bool = False  # the removals started (a run that could not start says so)

    @property
    def reclaimed_known(self) -> bool:
        """Whether df answered before and after: the engine may refuse a df (busy), never a removal."""
        return self.before is not None and self.after is not None

    @property
    def reclaimed(self) -> int:
        images = max((self.before or 0) - (self.after or 0), 0) if self.after is not None else 0
        return images + (self.build_cache_reclaimed or 0)


class _Fresh:
    """The engine's current images and containers, re-listed when older than `max_age` seconds,
    so every image is re-checked against a view at most that old, at the cost of one listing per
    interval (not per image)."""

    def __init__(self, api: docker.APIClient, max_age: float = 2.0) -> None:
        self.api = api
        self.max_age = max_age
        self._lock = threading.Lock()
        self._at = float("-inf")
        self.index = ImageIndex([])
        self.used: dict[str, list[dict[str, Any]]] = {}

    def view(self) -> tuple[ImageIndex, dict[str, list[dict[str, Any]]]]:
        with self._lock:
            if time.monotonic() - self._at > self.max_age:
                index = ImageIndex(list_images(self.api, all=True))
                used = containers_by_image(self.api.containers(all=True))
                self.index, self.used, self._at = index, used, time.monotonic()
            return self.index, self.used


class _EngineDown(Exception):
    pass


def _recheck(cand: Candidate, fresh: _Fresh) -> tuple[Summary | None, Skipped | None]:
    index, used = fresh.view()
    current, drift = recheck(Seen(cand.image_id, cand.tags), index, used=used)
    if drift is None:
        return current, None
    reason = drift.reason if drift.category == "gone" else f"{drift.reason} since the preview"
    return None, _skip(cand, drift.category, reason)


def _remove_one(api: docker.APIClient, cand: Candidate, current: Summary) -> Removed | Skipped:
    """Tag by tag (then leftover digests), or by ID when untagged; never forced."""
    refs = list(current["RepoTags"]) or list(current["RepoDigests"]) or [cand.image_id]
    lines: list[str] = []
    deleted = False
    untagged: set[str] = set()
    queue = list(refs)
    while queue:
        ref = queue.pop(0)
        try:
            removal = remove(api, ref)
        except connection_errors() as error:
            raise _EngineDown(connection_cause(error)) from error
        if removal.not_found:
            continue
        if removal.error is not None:
            category = "conflict" if removal.error.status_code == 409 else "error"
            what = f"{'; '.join(lines)}; then " if lines else ""
            return _skip(cand, category, what + explain(removal.error))
        lines.extend(removal.lines)
        untagged |= removal.untagged
        deleted = deleted or cand.image_id in removal.deleted
        if not queue and not deleted and ref in current["RepoTags"]:
            # The last tag went, yet digest references (another repository's) keep the image.
            queue = [d for d in current["RepoDigests"] if d not in untagged]
    if not deleted:
        try:  # only here, when the engine's answers did not say: is it still there?
            api.inspect_image(cand.image_id)
        except docker.errors.NotFound:
            if not lines:
                return _skip(cand, "gone", "already gone")
            return Removed(cand.image_id, cand.tags, cand.size, cand.rule, lines)
        why = "; ".join(lines) + "; the image stays" if lines else "the image stays"
        return _skip(cand, "conflict", why)
    return Removed(cand.image_id, cand.tags, cand.size, cand.rule, lines)


def _order(candidates: list[Candidate], index: ImageIndex) -> list[list[Candidate]]:
    """Waves to remove in: an image before the images it is built on (legacy builder parents)."""
    images = {image["Id"]: image for image in index.images}
    ids = {c.image_id for c in candidates}
    depth: dict[str, int] = dict.fromkeys(ids, 0)
    for c in candidates:
        level, parent = 0, (images.get(c.image_id) or {}).get("ParentId")
        while parent and parent in images:
            if parent in ids:
                level += 1
                depth[parent] = max(depth[parent], level)
            parent = images[parent].get("ParentId")
    waves: dict[int, list[Candidate]] = {}
    for c in candidates:
        waves.setdefault(depth[c.image_id], []).append(c)
    return [waves[k] for k in sorted(waves)]


def execute_cleanup(
    api: docker.APIClient,
    plan: CleanupPlan,
    *,
    prune_build_cache: bool = False,
    on_done: Callable[[Removed | Skipped], None] | None = None,
    workers: int = 4,  # the engine mostly serialises removals; a few in flight hide the round trips
) -> CleanupResult:
    """Remove the plan's candidates, each re-checked first; one failure never stops the others.
    `Total reclaimed space` is the df difference; the engine's 409s protect what became used."""
    started = time.monotonic()
    result = CleanupResult(
        host=plan.host,
        policy_text=plan.policy_text,
        unmatched=plan.unmatched,
        notes=list(plan.notes),
        skipped=[Skipped(k.image_id, k.tags, k.size, k.category, k.reason) for k in plan.kept],
    )

    def images_on_disk(when: str) -> int | None:
        # A refused df (an engine that allows one at a time says "a disk usage operation is
        # already running") costs the figure, never the removals.
        try:
            return images_usage(api).total
        except docker.errors.APIError as error:
            result.notes.append(f"disk usage {when} the run: {explain(error)}; reclaimed space unknown")
            return None

    try:
        result.before = images_on_disk("before")
        result.ran = True
        fresh = _Fresh(api)
        index, _ = fresh.view()
        down: list[str] = []
        lock = threading.Lock()

        def one(cand: Candidate) -> None:
            outcome: Removed | Skipped
            if down:
                outcome = _skip(cand, "not attempted", "engine unreachable")
            else:
                try:
                    current, skip = _recheck(cand, fresh)
                    outcome = skip if skip is not None else _remove_one(api, cand, current)  # type: ignore[arg-type]
                except (_EngineDown, *connection_errors()) as error:
                    down.append(str(error) if isinstance(error, _EngineDown) else connection_cause(error))
                    outcome = _skip(cand, "not attempted", "engine unreachable")
                except docker.errors.APIError as error:
                    outcome = _skip(cand, "error", explain(error))
                except Exception as error:  # one image's failure never stops the others
                    log.exception("cleanup of %s failed", cand.image_id)
                    outcome = _skip(cand, "error", f"{type(error).__name__}: {error}")
            with lock:
                if isinstance(outcome, Skipped) and outcome.category == "gone":
                    # Removing an image also deletes the untagged images it was built on; an earlier
                    # wave of this run did that (the containerd store has no parent chain to order by).
                    by = next((r for r in result.removed if f"Deleted: {cand.image_id}" in r.lines), None)
                    if by is not None:
                        line = f"Deleted: {cand.image_id} (with {short_id(by.image_id)})"
                        outcome = Removed(cand.image_id, cand.tags, cand.size, cand.rule, [line])
                (result.removed if isinstance(outcome, Removed) else result.skipped).append(outcome)
            if on_done is not None:
                try:
                    on_done(outcome)
                except Exception:  # an audit hiccup must not stop the run
                    log.exception("cleanup progress callback failed")

        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="cleanup") as pool:
            for wave in _order(plan.candidates, index):
                list(pool.map(one, wave))
        if down:
            result.errors.append(f"The engine became unreachable during the run: {down[0]}.")
        if prune_build_cache and not down:
            try:
                result.build_cache_reclaimed = int(api.prune_builds().get("SpaceReclaimed") or 0)
            except docker.errors.APIError as error:
                result.errors.append(f"Build cache: {explain(error)}")
        if not down and result.before is not None:
            result.after = images_on_disk("after")
    except connection_errors() as error:
        result.errors.append(f"Cannot reach the Docker engine on {plan.host}: {connection_cause(error)}.")
    except docker.errors.APIError as error:
        result.errors.append(explain(error))
    result.duration = time.monotonic() - started
    return result
