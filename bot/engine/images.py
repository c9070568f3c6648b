"""Local images as the docker CLI sees them: listing, table rows, "in use", and reference resolution.

Shared by /docker images, inspect and rmi. Every function costs one list call (and `images_in_use`
one containers call): never one inspect per image, which is what makes docker-py's
`client.images.list()` slow on big hosts.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import docker

from bot.engine.reference import InvalidReference, Reference, looks_like_id, parse_reference
from bot.errors import UserError
from bot.render.formatting import created_since, format_table, human_size, short_id

NONE = "<none>"
_LEGACY_UNTAGGED = {"<none>:<none>", "<none>@<none>"}  # API < 1.43 for untagged images
_MAX_SHOWN = 200  # user text echoed back is clipped so a reply always fits a Slack section

Summary = dict[str, Any]  # one entry of GET /images/json


def shown(text: str, limit: int = _MAX_SHOWN) -> str:
    """Text as we echo it in a reply: as it is, clipped when absurdly long."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def tags_cell(summary: Summary, limit: int = 3) -> str:
    """`a:1, b:2, c:3 +5`: an image's first tags, so a row stays short however many it has."""
    tags = summary["RepoTags"]
    if not tags:
        return NONE
    return ", ".join(tags[:limit]) + (f" +{len(tags) - limit}" if len(tags) > limit else "")


class NoSuchImage(UserError):
    def __init__(self, ref: str) -> None:
        self.ref = ref
        super().__init__(f"Error: No such object: {shown(ref)}")


class AmbiguousImage(UserError):
    """An ID prefix that matches several images (the engine just says "No such image")."""

    MAX_LISTED = 10

    def __init__(self, ref: str, candidates: list[Summary]) -> None:
        self.ref = ref
        self.candidates = candidates
        listed = ", ".join(f"{short_id(c['Id'])} ({tags_cell(c)})" for c in candidates[: self.MAX_LISTED])
        more = f" and {len(candidates) - self.MAX_LISTED} more" if len(candidates) > self.MAX_LISTED else ""
        super().__init__(
            f"Error: `{shown(ref)}` is ambiguous: it matches {len(candidates)} images: "
            f"{shown(listed + more, 2000)}. Use a longer ID prefix or a name."
        )

    def table(self, now: float | None = None) -> str:
        """The candidates as a CLI-style table: ID, tags, created, size."""
        now = time.time() if now is None else now
        rows = [
            [
                short_id(c["Id"]),
                tags_cell(c),
                created_since(c.get("Created"), now),
                human_size(c.get("Size") or 0),
            ]
            for c in self.candidates
        ]
        return format_table(["IMAGE ID", "TAGS", "CREATED", "SIZE"], rows)


# --------------------------------------------------------------------------------------------- listing


def _clean(summary: Summary) -> Summary:
    """One shape for every API version: untagged images have empty RepoTags/RepoDigests lists."""
    tags = summary.get("RepoTags") or []
    digests = summary.get("RepoDigests") or []
    if any(t in _LEGACY_UNTAGGED for t in tags) or any(d in _LEGACY_UNTAGGED for d in digests):
        tags = [t for t in tags if t not in _LEGACY_UNTAGGED]
        digests = [d for d in digests if d not in _LEGACY_UNTAGGED]
    # The containerd store lists an image pulled only by digest with its image record's name, `repo@sha256:…`,
    # in RepoTags too; it is no tag (the CLI shows `repo <none>`). Kept apart as DigestRefs: on that store
    # it is a reference of its own, which rmi removes ("Untagged: repo@sha256:…").
    digest_refs = [t for t in tags if "@" in t]
    if digest_refs:
        tags = [t for t in tags if "@" not in t]
        digests = [*digests, *(d for d in digest_refs if d not in digests)]
    return {
        **summary,
        "RepoTags": tags,
        "RepoDigests": digests,
        "DigestRefs": digest_refs,
        "Labels": summary.get("Labels") or {},
    }


def list_images(
    api: docker.APIClient, *, all: bool = False, filters: dict[str, list[str]] | None = None
) -> list[Summary]:
    """GET /images/json once, newest first (the engine's order, kept for equal dates).

    `filters` go to the engine as they are, so an invalid one fails with the engine's own
    text (`invalid filter 'foo'`) as an APIError, exactly as the CLI reports it.
    """
    raw = api.images(all=all, filters={k: list(v) for k, v in filters.items()} if filters else None)
    images = [_clean(s) for s in raw]
    images.sort(key=lambda s: s.get("Created") or 0, reverse=True)  # stable: ties keep engine order
    return images


def images_in_use(api: docker.APIClient) -> dict[str, list[dict[str, Any]]]:
    """Image ID -> the containers (running or stopped) created from it, from one containers call."""
    used: dict[str, list[dict[str, Any]]] = {}
    for container in api.containers(all=True):
        image_id = container.get("ImageID")
        if image_id:
            used.setdefault(image_id, []).append(container)
    return used


def container_name(container: dict[str, Any]) -> str:
    names = container.get("Names") or []
    return names[0].lstrip("/") if names else short_id(container.get("Id", ""))


def is_dangling(summary: Summary) -> bool:
    return not summary["RepoTags"] and not summary["RepoDigests"]


def summary_line(images: list[Summary], in_use: dict[str, list[Any]]) -> str:
    """`9 images, 18.1MB total, 7 unused`: distinct images; "unused" = no container uses it.

    The total adds each image's size, so layers shared between images count once per image.
    """
    ids = {s["Id"]: s.get("Size") or 0 for s in images}
    unused = sum(1 for image_id in ids if not in_use.get(image_id))
    noun = "image" if len(ids) == 1 else "images"
    return f"{len(ids)} {noun}, {human_size(sum(ids.values()))} total, {unused} unused"


# --------------------------------------------------------------------------------------------- rows


@dataclass(frozen=True)
class ImageRow:
    repository: str
    tag: str
    digest: str
    image: Summary

    @property
    def id(self) -> str:
        return self.image["Id"]


def _familiar_name(name: str) -> str:
    """reference.FamiliarName for names the engine wrote (always valid), without a full parse."""
    for domain in ("docker.io/", "index.docker.io/"):
        if name.startswith(domain):
            name = name[len(domain) :]
            if name.startswith("library/") and name.count("/") == 1:
                name = name[len("library/") :]
            break
    return name


def _split_tag(ref: str) -> tuple[str, str] | None:
    name, colon, tag = ref.rpartition(":")
    if not colon or "/" in tag:  # "host:5000/repo" has no tag
        return None
    return _familiar_name(name), tag


def _split_digest(ref: str) -> tuple[str, str] | None:
    name, at, digest = ref.partition("@")
    return (_familiar_name(name), digest) if at else None


def image_rows(images: Iterable[Summary], *, digests: bool = False) -> list[ImageRow]:
    """One row per repo:tag, as docker/cli `imageFormatTaggedAndDigest`.

    A repo with only digests gives one `repo <none>` row (one per digest with `digests`);
    a dangling image gives `<none> <none>`. Within an image the CLI's order is Go map
    order (random); here rows are sorted by repository, tags in the engine's order.
    """
    rows: list[ImageRow] = []
    for image in images:
        if is_dangling(image):
            rows.append(ImageRow(NONE, NONE, NONE, image))
            continue
        repo_tags: dict[str, list[str]] = {}
        for ref in image["RepoTags"]:
            if split := _split_tag(ref):
                repo_tags.setdefault(split[0], []).append(split[1])
        repo_digests: dict[str, list[str]] = {}
        for ref in image["RepoDigests"]:
            if split := _split_digest(ref):
                repo_digests.setdefault(split[0], []).append(split[1])
        for repo in sorted(repo_tags.keys() | repo_digests.keys()):
            tags = repo_tags.get(repo)
            dgsts = repo_digests.get(repo, []) if digests else []
            if tags and not dgsts:  # the common case: a row per tag
                rows += [ImageRow(repo, tag, NONE, image) for tag in tags]
            elif tags:
                for tag in tags:
                    rows.extend(ImageRow(repo, tag, d, image) for d in dgsts)
            elif digests:
                rows.extend(ImageRow(repo, NONE, d, image) for d in repo_digests[repo])
            else:
                rows.append(ImageRow(repo, NONE, "", image))
    return rows


SORT_KEYS = ("created", "size", "name")


def sort_rows(rows: list[ImageRow], by: str = "created") -> list[ImageRow]:
    """created: newest first (the CLI's order); size: largest first; name: repository, then tag."""
    if by == "size":
        return sorted(rows, key=lambda r: -(r.image.get("Size") or 0))
    if by == "name":
        return sorted(rows, key=lambda r: (r.repository == NONE, r.repository, r.tag == NONE, r.tag))
    if by == "created":
        return sorted(rows, key=lambda r: -(r.image.get("Created") or 0))
    raise ValueError(f"unknown sort key {by!r}")


def table_lines(rows: list[ImageRow], *, digests: bool = False, now: float | None = None) -> list[str]:
    """The CLI's classic table (header first): REPOSITORY TAG [DIGEST] IMAGE ID CREATED SIZE."""
    now = time.time() if now is None else now
    headers = ["REPOSITORY", "TAG", *(["DIGEST"] if digests else []), "IMAGE ID", "CREATED", "SIZE"]
    per_image: dict[str, tuple[str, str, str]] = {}  # formatted once per image, not per tag
    cells: list[tuple[str, ...]] = []
    for row in rows:
        image = row.image
        fixed = per_image.get(image["Id"])
        if fixed is None:
            fixed = per_image[image["Id"]] = (
                short_id(image["Id"]),
                created_since(image.get("Created"), now),
                human_size(image.get("Size") or 0),
            )
        if digests:
            cells.append((row.repository, row.tag, row.digest, *fixed))
        else:
            cells.append((row.repository, row.tag, *fixed))
    return format_table(headers, cells).split("\n")


# --------------------------------------------------------------------------------------------- resolution


def _hex(image_id: str) -> str:
    return image_id.removeprefix("sha256:")


def _parse(text: str) -> Reference | None:
    try:
        return parse_reference(text)
    except InvalidReference:
        return None


class ImageIndex:
    """Resolves references against one listing, like the engine's image store (moby
    daemon/images/image.go, GetImage).

    Build it once to resolve many refs (rmi) from a single list call.
    """

    def __init__(self, images: list[Summary]) -> None:
        self.images = images
        self._tags: dict[str, Summary] | None = None
        self._digests: dict[tuple[str, str], Summary] | None = None
        self._ids: dict[str, Summary] | None = None

    def _build(self) -> None:
        tags: dict[str, Summary] = {}
        digests: dict[tuple[str, str], Summary] = {}
        for image in self.images:
            for text in image["RepoTags"]:
                ref = _parse(text)
                if ref is not None and ref.tag:
                    tags.setdefault(ref.with_default_tag().canonical(), image)
            for text in image["RepoDigests"]:
                ref = _parse(text)
                if ref is not None and ref.digest:
                    digests.setdefault((ref.name, ref.digest), image)
        self._tags, self._digests = tags, digests

    def by_reference(self, ref: Reference) -> Summary | None:
        """name@digest by RepoDigests (a tag beside a digest is ignored, as the engine does);
        otherwise name[:tag], tag defaulting to latest, by RepoTags."""
        if self._tags is None or self._digests is None:
            self._build()
        assert self._tags is not None and self._digests is not None
        if ref.digest:
            return self._digests.get((ref.name, ref.digest))
        return self._tags.get(ref.with_default_tag().canonical())

    def by_id(self, image_id: str) -> Summary | None:
        """The image with exactly this ID (sha256:…), or None."""
        if self._ids is None:
            self._ids = {image["Id"]: image for image in self.images}
        return self._ids.get(image_id)

    def by_prefix(self, prefix: str) -> list[Summary]:
        wanted = _hex(prefix)
        return [image for image in self.images if _hex(image["Id"]).startswith(wanted)]

    def resolve(self, text: str) -> Summary:
        """The one image `text` names: a full ID, a name[:tag] or name@digest, or a unique ID
        prefix of any length. Raises NoSuchImage or AmbiguousImage; nothing is sent to the engine."""
        ref_text = text.strip()
        is_id = looks_like_id(ref_text)
        if is_id and len(_hex(ref_text)) == 64:  # a full ID is only ever an ID
            for image in self.images:
                if _hex(image["Id"]) == _hex(ref_text):
                    return image
            raise NoSuchImage(text)
        ref = _parse(ref_text)
        if ref is not None and (found := self.by_reference(ref)) is not None:
            return found
        if is_id:
            matches = self.by_prefix(ref_text)
            if len(matches) == 1:
                return matches[0]
            if matches:
                raise AmbiguousImage(text, matches)
        raise NoSuchImage(text)


def resolve_image(api: docker.APIClient, ref: str) -> Summary:
    """The list-endpoint summary of the image `ref` names (see ImageIndex.resolve).

    The list includes intermediate images (all=True), which can be inspected by ID too. The rule
    is the same on every store: the containerd store wants >= 4 hex chars, we accept any length.
    """
    return ImageIndex(list_images(api, all=True)).resolve(ref)
