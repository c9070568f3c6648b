"""The dry run: which images a policy would remove now, and which it keeps and why.

Protections keep candidates: pinned, in use, excluded, base of a kept image, younger than the grace
period, `keep-newest`, below the disk threshold. A plan comes from one image listing, one
containers listing and one /system/df; it is what a preview shows and exactly what a run removes.
"""

from __future__ import annotations

import fnmatch
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import docker

from bot.engine.dfcall import system_df
from bot.engine.diskusage import images_usage
from bot.engine.hostinfo import image_store
from bot.engine.images import Summary, container_name, image_rows, is_dangling, list_images
from bot.jobs.policy import Policy, format_duration
from bot.render.formatting import created_since, human_size, short_id

if TYPE_CHECKING:
    from bot.engine.ledger import Ledger

# Pinned images are never removed: label -> the value that pins (None: any value but "false").
PIN_LABELS = {"dockerbot.pin": None, "io.cri-containerd.pinned": "pinned"}


@dataclass
class Candidate:
    image_id: str
    tags: list[str]
    digests: list[str]
    size: int  # the image's size, as `docker images` shows it
    frees: int  # bytes deleting it alone frees (layers no other image shares)
    created: float
    last_used: float | None
    rule: str  # the rule that selected it


@dataclass
class Kept:
    image_id: str
    tags: list[str]
    size: int
    category: str  # pinned, in use, excluded, base image, too young, keep-newest, below threshold, ...
    reason: str


@dataclass
class CleanupPlan:
    host: str
    policy_text: str
    now: float
    candidates: list[Candidate]
    kept: list[Kept]
    unmatched: int  # images no selector chose (and nothing else to say about them)
    images_total: int  # bytes of image layers on disk (df), each layer once
    frees: int  # at least this much: the candidates' unique bytes
    build_cache: int | None = None  # reclaimable build cache, when the policy prunes it
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        # What asdict gives, without its deep copy of every field (it is stored as JSON at once).
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["candidates"] = [dict(vars(c)) for c in self.candidates]
        data["kept"] = [dict(vars(k)) for k in self.kept]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CleanupPlan:
        data = dict(data)
        data["candidates"] = [Candidate(**c) for c in data["candidates"]]
        data["kept"] = [Kept(**k) for k in data["kept"]]
        return cls(**data)


def containers_by_image(containers: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Image ID -> the containers (running or not) made from it."""
    used: dict[str, list[dict[str, Any]]] = {}
    for c in containers:
        if c.get("ImageID"):
            used.setdefault(c["ImageID"], []).append(c)
    return used


def _label_text(label: tuple[str, str | None]) -> str:
    return label[0] if label[1] is None else f"{label[0]}={label[1]}"


def _repos(image: Summary) -> set[str]:
    return {row.repository for row in image_rows([image]) if row.repository != "<none>"}


def _names(image: Summary) -> list[str]:
    """What a glob is matched against: each tag, its repository, and the short ID."""
    return [*image["RepoTags"], *_repos(image), short_id(image["Id"])]


def _has_label(image: Summary, key: str, value: str | None) -> bool:
    labels = image.get("Labels") or {}
    if key not in labels:
        return False
    return value is None or labels[key] == value


def _pinned(image: Summary, policy: Policy) -> str | None:
    for key, value in PIN_LABELS.items():
        if key in image["Labels"] and (
            image["Labels"][key] == value if value else image["Labels"][key].lower() != "false"
        ):
            return f"pinned by label {key}"
    for glob in policy.pins:
        if any(fnmatch.fnmatchcase(n, glob) for n in _names(image)):
            return f"pinned by {glob}"
    return None


def _excluded(image: Summary, policy: Policy) -> str | None:
    for glob in policy.excludes:
        if any(fnmatch.fnmatchcase(n, glob) for n in _names(image)):
            return f"excluded by {glob}"
    for label in policy.exclude_labels:
        if _has_label(image, *label):
            return f"excluded by label {_label_text(label)}"
    return None


def _select(image: Summary, policy: Policy, last_used: float, now: float) -> tuple[str | None, str | None]:
    """(the rule that selects the image, or None with why a last-use rule did not)."""
    recently = None
    for sel in policy.selectors:
        if sel.kind == "dangling" and is_dangling(image):
            return sel.text, None
        old_enough = sel.age is None or (image.get("Created") or 0) <= now - sel.age
        if sel.kind == "unused" and not is_dangling(image) and old_enough:
            return sel.text, None
        if sel.kind == "unused-since":
            if last_used <= now - (sel.age or 0):
                return sel.text, None
            recently = f"last used {created_since(last_used, now)} (< {sel.text})"
        if sel.kind == "lru":
            return sel.text, None
    return None, recently


_UNIX_SOCKET_BASE_URL = "http+docker://localhost"  # docker-py's base_url for unix://


def _filesystem_size(api: docker.APIClient, host: str) -> tuple[int | None, str | None]:
    """The size of the engine's data-root filesystem: only measurable from the engine's machine.

    Only an engine reached through a unix socket is on this machine; a tcp:// or ssh:// engine's
    data root may exist here too, as a path on another disk, which would give a wrong size."""
    if api.base_url != _UNIX_SOCKET_BASE_URL:
        return None, (
            f"percent thresholds need the engine on the bot's machine; {host} is reached over the "
            "network, so the threshold keeps everything (give sizes instead, e.g. 50GB)"
        )
    try:
        root = api.info().get("DockerRootDir") or ""
        stat = os.statvfs(root) if root and os.path.isdir(root) else None
    except (OSError, docker.errors.APIError) as error:
        return None, f"cannot measure the data-root filesystem on {host}: {error}"
    if stat is None:
        return None, (
            f"percent thresholds need the engine's data root ({root or '?'}) on the bot's machine; "
            f"{host}'s is not, so the threshold keeps everything"
        )
    return stat.f_blocks * stat.f_frsize, None


def build_cache_size(api: docker.APIClient) -> int:
    """Reclaimable build cache from /system/df, in both shapes (API < 1.52: BuildCache[];
    >= 1.53: BuildCacheUsage)."""
    df = system_df(api, {"type": "build-cache"})
    if "BuildCacheUsage" in df and df.get("BuildCache") is None:
        usage = df["BuildCacheUsage"] or {}
        return int(usage.get("Reclaimable") or 0)
    items = df.get("BuildCache") or []
    return sum(int(i.get("Size") or 0) for i in items if not i.get("InUse") and not i.get("Shared"))


def plan_cleanup(
    api: docker.APIClient,
    policy: Policy,
    *,
    host_name: str,
    ledger: Ledger | None,
    now: float,
    record: bool = False,
) -> CleanupPlan:
    """What a run would remove as of `now` (a dry run), and what it keeps and why.

    One image listing, one containers listing and one df. `now` may be in the future: "what would
    `unused-since 14d` remove in 15 days" needs no faked engine."""
    everything = list_images(api, all=True)
    containers = api.containers(all=True)
    usage = images_usage(api)
    # The containerd store keeps no parent chain: each image is a whole manifest, the classic builder's
    # intermediate images are dangling images like any other (`docker image prune` removes them), and
    # the engine never refuses a removal for "dependent child images".
    containerd = image_store(api.info()).startswith("containerd")
    parents = {i.get("ParentId") for i in everything if i.get("ParentId")} if not containerd else set()
    by_id = {i["Id"]: i for i in everything}
    # Top-level images, as `docker images` lists them: intermediate build layers go with their child.
    images = [i for i in everything if not (is_dangling(i) and i["Id"] in parents)]
    used = containers_by_image(containers)

    last: dict[str, float] = {}
    if ledger is not None:
        known = ledger.all_last_used(host_name)
        last = {image_id: when for image_id, (when, _source) in known.items()}
        for image in images:  # first sight: last use is its Created time, as the ledger seeds it
            last.setdefault(image["Id"], float(image.get("Created") or 0))
        if record:  # a run, not a preview a viewer may ask for: only runs write the ledger
            # Read above, before the in-use images are refreshed: "in use" is the reason shown.
            ledger.seed(host_name, images)
            ledger.refresh_in_use(host_name, [i for i in used if i in by_id], time.time())
            ledger.forget_many(host_name, set(known) - set(by_id))

    def last_used(image: Summary) -> float:
        return last.get(image["Id"], float(image.get("Created") or 0))

    def disk(image: Summary) -> tuple[int, int]:
        found = usage.images.get(image["Id"])
        size = int(image.get("Size") or 0)
        return size, (found.unique if found else size)

    candidates: list[Candidate] = []
    kept: list[Kept] = []
    unmatched = 0

    def keep(image: Summary, category: str, reason: str) -> None:
        kept.append(Kept(image["Id"], list(image["RepoTags"]), disk(image)[0], category, reason))

    chosen: list[tuple[Summary, str]] = []
    for image in images:
        rule, recently = _select(image, policy, last_used(image), now)
        if rule is None and not recently:
            unmatched += 1
        elif rule is None and image["Id"] not in used:
            keep(image, "recently used", recently or "")
        elif rule is not None and (reason := _pinned(image, policy)):
            keep(image, "pinned", reason)
        elif image["Id"] in used:  # "last used" is now for an image in use: say why
            users = used[image["Id"]]
            names = ", ".join(f"{container_name(c)} ({c.get('State', '?')})" for c in users[:3])
            more = f" and {len(users) - 3} more" if len(users) > 3 else ""
            keep(image, "in use", f"in use by {names}{more}")
        elif reason := _excluded(image, policy):
            keep(image, "excluded", reason)
        elif (young := _too_young(image, last_used(image), now, policy.grace)) is not None:
            keep(image, "too young", young)
        else:
            assert rule is not None
            chosen.append((image, rule))

    if policy.keep_newest:
        newest: set[str] = set()
        groups: dict[str, list[Summary]] = {}
        for image in images:
            for repo in _repos(image):
                groups.setdefault(repo, []).append(image)
        for members in groups.values():
            members.sort(key=lambda i: (i.get("Created") or 0, i["Id"]), reverse=True)
            newest.update(i["Id"] for i in members[: policy.keep_newest])
        remaining = []
        for image, rule in chosen:
            if image["Id"] in newest:
                repos = ", ".join(sorted(_repos(image)))
                keep(image, "keep-newest", f"keep-newest {policy.keep_newest}: one of the newest of {repos}")
            else:
                remaining.append((image, rule))
        chosen = remaining

    # A candidate that a kept image is built on stays too: the engine would refuse ("dependent child").
    chosen_ids = {i["Id"] for i, _ in chosen}
    protected: dict[str, str] = {}
    for image in images if not containerd else []:
        if image["Id"] in chosen_ids:
            continue
        parent = image.get("ParentId")
        while parent and parent in by_id:
            if parent in chosen_ids and parent not in protected:
                protected[parent] = ", ".join(image["RepoTags"][:1]) or short_id(image["Id"])
            parent = by_id[parent].get("ParentId")
    for image, _rule in chosen:
        if image["Id"] in protected:
            keep(image, "base image", f"base of kept image {protected[image['Id']]}")
    chosen = [(i, r) for i, r in chosen if i["Id"] not in protected]

    notes: list[str] = []
    if policy.threshold is not None:
        chosen = _apply_threshold(api, policy, chosen, usage.total, last_used, disk, keep, notes, host_name)

    for image, rule in chosen:
        size, frees = disk(image)
        candidates.append(
            Candidate(
                image_id=image["Id"],
                tags=list(image["RepoTags"]),
                digests=list(image["RepoDigests"]),
                size=size,
                frees=frees,
                created=float(image.get("Created") or 0),
                last_used=last.get(image["Id"]),
                rule=rule,
            )
        )
    cache = build_cache_size(api) if policy.build_cache else None
    return CleanupPlan(
        host=host_name,
        policy_text=policy.text,
        now=now,
        candidates=candidates,
        kept=kept,
        unmatched=unmatched,
        images_total=usage.total,
        frees=sum(c.frees for c in candidates),
        build_cache=cache,
        notes=notes,
    )


def _apply_threshold(
    api: docker.APIClient,
    policy: Policy,
    chosen: list[tuple[Summary, str]],
    total: int,
    last_used: Callable[[Summary], float],
    disk: Callable[[Summary], tuple[int, int]],
    keep: Callable[[Summary, str, str], None],
    notes: list[str],
    host: str,
) -> list[tuple[Summary, str]]:
    """Only above HIGH: least recently used first, until the images would be below LOW."""
    assert policy.threshold is not None
    high, low = policy.threshold
    fs_size = None
    if high.percent or low.percent:
        fs_size, problem = _filesystem_size(api, host)
        if problem:
            notes.append(problem)
    high_b, low_b = high.bytes_of(fs_size), low.bytes_of(fs_size)
    if high_b is None or low_b is None:
        for image, _ in chosen:
            keep(image, "below threshold", "disk threshold unknown (see notes)")
        return []
    if total <= high_b:
        for image, _ in chosen:
            keep(image, "below threshold", f"images use {human_size(total)} ≤ {high.text}")
        return []
    notes.append(
        f"images use {human_size(total)} > {high.text}: evicting least recently used down to {low.text}"
    )
    chosen = sorted(chosen, key=lambda pair: (last_used(pair[0]), pair[0].get("Created") or 0))
    projected = total
    picked = []
    for image, rule in chosen:
        if projected <= low_b:
            keep(image, "below threshold", f"not needed: usage would already be ≤ {low.text}")
            continue
        picked.append((image, rule if rule.startswith("disk-threshold") else f"{rule}, disk-threshold"))
        projected -= disk(image)[1]
    return picked


def _too_young(image: Summary, last_used: float, now: float, grace: float) -> str | None:
    """Why the grace period keeps an image created or last used less than `grace` ago (rollbacks)."""
    created = float(image.get("Created") or 0)
    moment = max(created, last_used)
    if now - moment >= grace:
        return None
    what = "used" if last_used > created else "created"
    return f"too young: {what} {created_since(moment, now)} (grace {format_duration(grace)})"
