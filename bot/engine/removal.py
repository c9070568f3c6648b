"""Removing images, the one way rmi and cleanup both do it.

What the user saw (a confirmation card, a cleanup preview) is checked again against the engine
just before anything goes: an image that is gone, a tag that now points elsewhere, an image that
gained tags or (for cleanup) a container since then is left alone. Then one removal call per
reference; the engine's own refusals (409s) are passed on as the docker CLI prints them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import docker

from bot.engine.images import ImageIndex, Summary, container_name
from bot.engine.reference import parse_reference
from bot.render.formatting import short_id


def explain(error: docker.errors.APIError) -> str:
    """The engine's refusal as the docker CLI prints it."""
    return f"Error response from daemon: {error.explanation or error}"


@dataclass(frozen=True)
class Seen:
    """One image as the user saw it when they agreed to remove it."""

    image_id: str
    tags: list[str]  # its tags then
    by_tag: str | None = None  # the tag they named, when they named one (rmi NAME:TAG)


@dataclass(frozen=True)
class Drift:
    """Why an image is not touched: what changed since the user saw it."""

    category: str  # gone, moved, in use, changed
    reason: str  # e.g. "already gone", "now points at 1a2b3c4d5e6f", "gained web:2"


def recheck(
    seen: Seen,
    index: ImageIndex,
    *,
    used: Mapping[str, list[dict[str, Any]]] | None = None,
) -> tuple[Summary | None, Drift | None]:
    """The image to remove now, or why not. `used` (image ID -> containers), when given, also
    keeps an image that a container started using since (rmi leaves that to the engine's 409)."""
    if seen.by_tag:
        current = index.by_reference(parse_reference(seen.by_tag))
        if current is None:
            return None, Drift("gone", "no longer exists")
        if current["Id"] != seen.image_id:
            now, then = short_id(current["Id"]), short_id(seen.image_id)
            return None, Drift("moved", f"now points at {now}, not {then}")
        return current, None
    current = index.by_id(seen.image_id)
    if current is None:
        return None, Drift("gone", "already gone")
    if used is not None and seen.image_id in used:
        users = ", ".join(container_name(c) for c in used[seen.image_id][:3])
        return None, Drift("in use", f"in use by {users}")
    gained = sorted(set(current["RepoTags"]) - set(seen.tags))
    if gained:
        return None, Drift("changed", f"gained {', '.join(gained)}")
    return current, None


@dataclass
class Removal:
    """What one removal call did: the engine's lines (`Untagged: …`, `Deleted: …`), or its refusal."""

    ref: str
    lines: list[str] = field(default_factory=list)
    deleted: set[str] = field(default_factory=set)  # image IDs the engine deleted
    untagged: set[str] = field(default_factory=set)
    error: docker.errors.APIError | None = None  # NotFound included: the caller says what it means

    @property
    def not_found(self) -> bool:
        return isinstance(self.error, docker.errors.NotFound)


def remove(api: docker.APIClient, ref: str, *, force: bool = False, noprune: bool = False) -> Removal:
    """One `DELETE /images/{ref}`. Connection errors propagate: the caller decides whether the
    rest of its work can go on."""
    removal = Removal(ref)
    try:
        items = api.remove_image(ref, force=force, noprune=noprune) or []
    except docker.errors.APIError as error:
        removal.error = error
        return removal
    for item in items:
        for key, value in item.items():
            removal.lines.append(f"{key}: {value}")
            if key == "Untagged":
                removal.untagged.add(value)
            elif key == "Deleted":
                removal.deleted.add(value)
    return removal
