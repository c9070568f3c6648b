"""Cleanup policies: parse them, plan a run (the dry run a preview shows), run it, summarise it.

A policy is a list of rules. Selectors say which images are candidates (`dangling`, `unused`,
`unused-since`; `disk-threshold` alone selects every unused image, least recently used first);
protections keep candidates (pinned, in use, excluded, base of a kept image, younger than the
grace period, `keep-newest`, below the disk threshold). A plan comes from one image listing, one
containers listing and one /system/df; a run removes exactly the plan's candidates, each checked
again just before, tag by tag and never forced, so the engine's own conflicts protect anything
that became used meanwhile.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import docker
import yaml

from bot.commands import UserError
from bot.diskusage import images_usage
from bot.formatting import created_since, ellipsis, human_size, short_id
from bot.hosts import CONNECTION_ERRORS, DockerHost, EngineUnavailable, connection_cause
from bot.images import Summary, container_name, fast_table, image_rows, is_dangling, list_images
from bot.messages import MAX_BLOCKS, File, Message, code_blocks, context, fields, header, section

if TYPE_CHECKING:
    from bot.ledger import Ledger
    from bot.services import Services

log = logging.getLogger("dockerbot.cleanup")

DEFAULT_GRACE = 3600.0
# Pinned images are never removed: label -> the value that pins (None: any value but "false").
PIN_LABELS = {"dockerbot.pin": None, "io.cri-containerd.pinned": "pinned"}
RULES_HELP = (
    "dangling · unused [--older-than 30d] · unused-since 14d · keep-newest N · grace 1h · "
    "exclude GLOB|label=K[=V] · pin GLOB · disk-threshold HIGH LOW · build-cache"
)

# --------------------------------------------------------------------------------------------- parsing

_RULE_WORDS = {
    "dangling", "unused", "unused-since", "keep-newest", "grace", "min-age", "exclude", "exclude-label",
    "pin", "disk-threshold", "build-cache", "prune-build-cache",
}  # fmt: skip

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])", re.I)
_SIZE_UNITS = {
    "": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
    "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}  # fmt: skip
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)", re.I)
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)%")


def parse_duration(text: str, rule: str) -> float:
    """`1h`, `14d`, `2w`, `1h30m` -> seconds."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts).lower() != text.lower():
        raise UserError(f"`{rule}`: `{text}` is not a duration; use e.g. 30m, 1h, 14d or 2w.")
    return sum(float(n) * _DURATION_UNITS[u.lower()] for n, u in parts)


def format_duration(seconds: float) -> str:
    """The short form rules are written in: 1209600 -> `14d`."""
    if seconds <= 0:
        return "0"
    for unit in ("w", "d", "h", "m"):
        size = _DURATION_UNITS[unit]
        if seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True)
class Amount:
    """A disk amount: bytes, or a percentage of the engine's data-root filesystem."""

    value: float
    percent: bool
    text: str

    def bytes_of(self, fs_size: int | None) -> int | None:
        if not self.percent:
            return int(self.value)
        return None if fs_size is None else int(fs_size * self.value / 100)


def parse_amount(text: str, rule: str) -> Amount:
    if match := _PERCENT.fullmatch(text):
        value = float(match.group(1))
        if not 0 < value <= 100:
            raise UserError(f"`{rule}`: `{text}` must be between 0% and 100%.")
        return Amount(value, True, text)
    match = _SIZE.fullmatch(text)
    if not match or match.group(2).lower() not in _SIZE_UNITS:
        raise UserError(f"`{rule}`: `{text}` is not a size; use e.g. 500MB, 10GB or 85%.")
    return Amount(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()], False, text)


@dataclass(frozen=True)
class Selector:
    kind: str  # dangling | unused | unused-since | lru (disk-threshold alone)
    text: str  # the rule as shown next to each image it selects
    age: float | None = None  # unused: --older-than (Created); unused-since: since last use


@dataclass(frozen=True)
class Policy:
    rules: tuple[str, ...]  # normalised, in the order given: what a preview shows
    selectors: tuple[Selector, ...]
    name: str | None = None
    keep_newest: int | None = None
    grace: float = DEFAULT_GRACE
    excludes: tuple[str, ...] = ()  # reference globs
    exclude_labels: tuple[tuple[str, str | None], ...] = ()
    pins: tuple[str, ...] = ()
    threshold: tuple[Amount, Amount] | None = None
    build_cache: bool = False

    @property
    def text(self) -> str:
        return ", ".join(self.rules)

    @property
    def title(self) -> str:
        return f"{self.name} ({self.text})" if self.name else self.text


def _label(text: str, rule: str) -> tuple[str, str | None]:
    key, eq, value = text.partition("=")
    if not key:
        raise UserError(f"`{rule}`: `{text}` is not a label; use KEY or KEY=VALUE, e.g. keep=true.")
    return key, (value if eq else None)


def _label_text(label: tuple[str, str | None]) -> str:
    return label[0] if label[1] is None else f"{label[0]}={label[1]}"


def parse_policy(text: str, name: str | None = None) -> Policy:
    """`unused-since 14d, keep-newest 3, exclude postgres:*` -> Policy. Rules are separated by commas
    (or semicolons, or new lines); a bad rule raises UserError naming it. No selector means `dangling`."""
    selectors: list[Selector] = []
    rules: list[str] = []
    opts: dict[str, Any] = {"excludes": [], "exclude_labels": [], "pins": []}
    seen: set[str] = set()

    def once(rule: str) -> None:
        if rule in seen:
            raise UserError(f"`{rule}` appears twice in the policy.")
        seen.add(rule)

    for part in (p.strip() for p in re.split(r"[,;\n]", text or "")):
        if not part:
            continue
        head, *args = part.split()
        rule = head.lower()
        if rule == "dangling" and not args:
            once(rule)
            selectors.append(Selector("dangling", "dangling"))
        elif rule == "unused":
            once(rule)
            if len(args) == 1 and args[0].startswith("--older-than="):
                args = ["--older-than", args[0].split("=", 1)[1]]
            if args and (len(args) != 2 or args[0].lstrip("-") != "older-than"):
                raise UserError(f"`{part}`: write `unused` or `unused --older-than 30d`.")
            age = parse_duration(args[1], part) if args else None
            shown = f"unused --older-than {args[1].lower()}" if args else "unused"
            selectors.append(Selector("unused", shown, age))
        elif rule == "unused-since" and len(args) == 1:
            once(rule)
            age = parse_duration(args[0], part)
            selectors.append(Selector("unused-since", f"unused-since {args[0].lower()}", age))
        elif rule == "keep-newest" and len(args) == 1:
            once(rule)
            if not args[0].isdigit() or int(args[0]) < 1:
                raise UserError(f"`{part}`: N must be a whole number of at least 1, e.g. `keep-newest 3`.")
            opts["keep_newest"] = int(args[0])
            rules.append(f"keep-newest {int(args[0])}")
        elif rule in ("grace", "min-age") and len(args) == 1:
            once("grace")
            opts["grace"] = 0.0 if args[0] == "0" else parse_duration(args[0], part)
            rules.append(f"grace {args[0].lower()}")
        elif rule == "exclude" and args:
            for arg in args:
                if arg.startswith("label="):
                    opts["exclude_labels"].append(_label(arg[len("label=") :], part))
                else:
                    opts["excludes"].append(arg)
            rules.append(f"exclude {' '.join(args)}")
        elif rule == "exclude-label" and args:
            opts["exclude_labels"].extend(_label(arg, part) for arg in args)
            rules.append("exclude " + " ".join(f"label={a}" for a in args))
        elif rule == "pin" and args:
            opts["pins"].extend(args)
            rules.append(f"pin {' '.join(args)}")
        elif rule == "disk-threshold" and len(args) in (1, 2):
            once(rule)
            high = parse_amount(args[0], part)
            low = parse_amount(args[-1], part)
            if high.percent == low.percent and low.value > high.value:
                raise UserError(f"`{part}`: LOW ({low.text}) must not be above HIGH ({high.text}).")
            opts["threshold"] = (high, low)
            rules.append(f"disk-threshold {high.text} {low.text}")
        elif rule in ("build-cache", "prune-build-cache") and not args:
            once("build-cache")
            opts["build_cache"] = True
            rules.append("build-cache")
        elif rule in _RULE_WORDS:
            raise UserError(f"`{part}`: wrong arguments. Rules: {RULES_HELP}.")
        else:
            raise UserError(f"Unknown cleanup rule `{head}`. Rules: {RULES_HELP}.")
    if not selectors and "threshold" in opts:  # docuum-style: every unused image, least recently used first
        high, low = opts["threshold"]
        selectors.append(Selector("lru", f"disk-threshold {high.text} {low.text}"))
    elif not selectors:
        selectors.append(Selector("dangling", "dangling"))
    if "grace" not in seen:
        rules.append(f"grace {format_duration(DEFAULT_GRACE)}")
    selector_texts = [s.text for s in selectors if s.kind != "lru"]
    return Policy(
        rules=tuple(selector_texts + rules),
        selectors=tuple(selectors),
        name=name,
        keep_newest=opts.get("keep_newest"),
        grace=opts.get("grace", DEFAULT_GRACE),
        excludes=tuple(opts["excludes"]),
        exclude_labels=tuple(opts["exclude_labels"]),
        pins=tuple(opts["pins"]),
        threshold=opts.get("threshold"),
        build_cache=opts.get("build_cache", False),
    )


_POLICY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def load_policies(path: str | Path) -> dict[str, Policy]:
    """Named policies from YAML: `policies: {nightly: "unused-since 14d, keep-newest 3", ci: [...]}`
    (a rule list or one string each). A policy named `default` is used when none is given."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as error:
        raise UserError(f"Cannot read the policies file {path}: {error.strerror or error}.") from None
    except yaml.YAMLError as error:
        raise UserError(f"The policies file {path} is not valid YAML: {error}".split("\n")[0]) from None
    if isinstance(data, dict) and "policies" in data:
        data = data["policies"]
    if not isinstance(data, dict):
        raise UserError(f"The policies file {path} must map policy names to rules.")
    policies: dict[str, Policy] = {}
    for name, rules in data.items():
        name = str(name)
        if not _POLICY_NAME.fullmatch(name) or name.lower() in _RULE_WORDS:
            raise UserError(
                f"{path}: `{name}` cannot name a policy (letters, digits, . _ -; not a rule name)."
            )
        if isinstance(rules, list) and all(isinstance(r, str) for r in rules):
            rules = ", ".join(rules)
        if not isinstance(rules, str):
            raise UserError(f"{path}: policy `{name}` must be a string or a list of rules.")
        try:
            policies[name] = parse_policy(rules, name=name)
        except UserError as error:
            raise UserError(f"{path}: policy `{name}`: {error}") from None
    return policies


def check_policies(named: dict[str, str]) -> dict[str, Policy]:
    """Parse named policies (`policies:` in DOCKERBOT_CONFIG) at start: a bad one names itself."""
    parsed = {}
    for name, text in named.items():
        try:
            parsed[name] = parse_policy(text, name=name)
        except UserError as error:
            raise UserError(f"policies: `{name}`: {error}") from None
    return parsed


_loaded: dict[str, tuple[float, dict[str, Policy]]] = {}


def named_policies(services: Any) -> dict[str, Policy]:
    """Named policies: `policies:` in the bot's config, then a policies file (`policies_file` in the
    settings, if the deployment has one; re-read when it changes)."""
    named = check_policies(getattr(services, "policies", None) or {})
    path = getattr(services.settings, "policies_file", None)
    if path:
        try:
            mtime = os.stat(path).st_mtime
        except OSError:
            mtime = -1.0
        cached = _loaded.get(str(path))
        if cached is None or cached[0] != mtime:
            cached = _loaded[str(path)] = (mtime, load_policies(path))
        named.update(cached[1])
    return named


def resolve_policy(text: str | None, services: Any) -> Policy:
    """A named policy, else the rules as written. None given: the policy named `default`, else `dangling`."""
    text = (text or "").strip()
    named = named_policies(services)
    if text in named:
        return named[text]
    if not text and "default" in named:
        return named["default"]
    return parse_policy(text)


# --------------------------------------------------------------------------------------------- planning


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
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CleanupPlan:
        data = dict(data)
        data["candidates"] = [Candidate(**c) for c in data["candidates"]]
        data["kept"] = [Kept(**k) for k in data["kept"]]
        return cls(**data)


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


def _filesystem_size(api: docker.APIClient, host: str) -> tuple[int | None, str | None]:
    """The size of the engine's data-root filesystem: only measurable from the engine's machine."""
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
    """Reclaimable build cache from /system/df, in both shapes (docker-engine.md §1f)."""
    df = api._result(api._get(api._url("/system/df"), params={"type": "build-cache"}), True)
    if "BuildCacheUsage" in df and df.get("BuildCache") is None:
        usage = df["BuildCacheUsage"] or {}
        return int(usage.get("Reclaimable") or 0)
    items = df.get("BuildCache") or []
    return sum(int(i.get("Size") or 0) for i in items if not i.get("InUse") and not i.get("Shared"))


def plan_cleanup(
    api: docker.APIClient, policy: Policy, *, host_name: str, ledger: Ledger | None, now: float
) -> CleanupPlan:
    """What a run would remove as of `now` (a dry run), and what it keeps and why.

    One image listing, one containers listing and one df. `now` may be in the future: "what would
    `unused-since 14d` remove in 15 days" needs no faked engine."""
    everything = list_images(api, all=True)
    containers = api.containers(all=True)
    usage = images_usage(api)
    parents = {i.get("ParentId") for i in everything if i.get("ParentId")}
    by_id = {i["Id"]: i for i in everything}
    # Top-level images, as `docker images` lists them: intermediate build layers go with their child.
    images = [i for i in everything if not (is_dangling(i) and i["Id"] in parents)]
    used: dict[str, list[dict[str, Any]]] = {}
    for c in containers:
        if c.get("ImageID"):
            used.setdefault(c["ImageID"], []).append(c)

    last: dict[str, float] = {}
    if ledger is not None:
        # Read before refreshing the in-use images, so "in use" (not "used just now") is the reason shown.
        ledger.seed(host_name, images)
        known = ledger.all_last_used(host_name)
        last = {image_id: when for image_id, (when, _source) in known.items()}
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
    for image in images:
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


# --------------------------------------------------------------------------------------------- running


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
        self.images: dict[str, Summary] = {}
        self.used: dict[str, list[dict[str, Any]]] = {}

    def view(self) -> tuple[dict[str, Summary], dict[str, list[dict[str, Any]]]]:
        with self._lock:
            if time.monotonic() - self._at > self.max_age:
                images = {i["Id"]: i for i in list_images(self.api, all=True)}
                used: dict[str, list[dict[str, Any]]] = {}
                for c in self.api.containers(all=True):
                    if c.get("ImageID"):
                        used.setdefault(c["ImageID"], []).append(c)
                self.images, self.used, self._at = images, used, time.monotonic()
            return self.images, self.used


class _EngineDown(Exception):
    pass


def _recheck(cand: Candidate, fresh: _Fresh) -> tuple[Summary | None, Skipped | None]:
    images, used = fresh.view()
    current = images.get(cand.image_id)
    if current is None:
        return None, Skipped(cand.image_id, cand.tags, cand.size, "gone", "already gone")
    if cand.image_id in used:
        users = ", ".join(container_name(c) for c in used[cand.image_id][:3])
        return None, Skipped(
            cand.image_id, cand.tags, cand.size, "in use", f"in use by {users} since the preview"
        )
    gained = sorted(set(current["RepoTags"]) - set(cand.tags))
    if gained:
        return None, Skipped(
            cand.image_id, cand.tags, cand.size, "changed", f"gained {', '.join(gained)} since the preview"
        )
    return current, None


def _explain(error: docker.errors.APIError) -> str:
    return f"Error response from daemon: {error.explanation or error}"


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
            items = api.remove_image(ref) or []
        except docker.errors.NotFound:
            continue
        except docker.errors.APIError as error:
            category = "conflict" if error.status_code == 409 else "error"
            what = f"{'; '.join(lines)}; then " if lines else ""
            return Skipped(cand.image_id, cand.tags, cand.size, category, what + _explain(error))
        except CONNECTION_ERRORS as error:
            raise _EngineDown(connection_cause(error)) from error
        for item in items:
            for key, value in item.items():
                lines.append(f"{key}: {value}")
                if key == "Untagged":
                    untagged.add(value)
                deleted = deleted or (key == "Deleted" and value == cand.image_id)
        if not queue and not deleted and ref in current["RepoTags"]:
            # The last tag went, yet digest references (another repository's) keep the image.
            queue = [d for d in current["RepoDigests"] if d not in untagged]
    if not deleted:
        try:  # only here, when the engine's answers did not say: is it still there?
            api.inspect_image(cand.image_id)
        except docker.errors.NotFound:
            if not lines:
                return Skipped(cand.image_id, cand.tags, cand.size, "gone", "already gone")
            return Removed(cand.image_id, cand.tags, cand.size, cand.rule, lines)
        why = "; ".join(lines) + "; the image stays" if lines else "the image stays"
        return Skipped(cand.image_id, cand.tags, cand.size, "conflict", why)
    return Removed(cand.image_id, cand.tags, cand.size, cand.rule, lines)


def _order(candidates: list[Candidate], images: dict[str, Summary]) -> list[list[Candidate]]:
    """Waves to remove in: an image before the images it is built on (legacy builder parents)."""
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
    try:
        result.before = images_usage(api).total
        fresh = _Fresh(api)
        images, _ = fresh.view()
        down: list[str] = []
        lock = threading.Lock()

        def one(cand: Candidate) -> None:
            outcome: Removed | Skipped
            if down:
                outcome = Skipped(cand.image_id, cand.tags, cand.size, "not attempted", "engine unreachable")
            else:
                try:
                    current, skip = _recheck(cand, fresh)
                    outcome = skip if skip is not None else _remove_one(api, cand, current)  # type: ignore[arg-type]
                except (_EngineDown, *CONNECTION_ERRORS) as error:
                    down.append(str(error) if isinstance(error, _EngineDown) else connection_cause(error))
                    outcome = Skipped(
                        cand.image_id, cand.tags, cand.size, "not attempted", "engine unreachable"
                    )
                except docker.errors.APIError as error:
                    outcome = Skipped(cand.image_id, cand.tags, cand.size, "error", _explain(error))
                except Exception as error:  # one image's failure never stops the others
                    log.exception("cleanup of %s failed", cand.image_id)
                    outcome = Skipped(
                        cand.image_id, cand.tags, cand.size, "error", f"{type(error).__name__}: {error}"
                    )
            with lock:
                (result.removed if isinstance(outcome, Removed) else result.skipped).append(outcome)
            if on_done is not None:
                try:
                    on_done(outcome)
                except Exception:  # an audit hiccup must not stop the run
                    log.exception("cleanup progress callback failed")

        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="cleanup") as pool:
            for wave in _order(plan.candidates, images):
                list(pool.map(one, wave))
        if down:
            result.errors.append(f"The engine became unreachable during the run: {down[0]}.")
        if prune_build_cache and not down:
            try:
                result.build_cache_reclaimed = int(api.prune_builds().get("SpaceReclaimed") or 0)
            except docker.errors.APIError as error:
                result.errors.append(f"Build cache: {_explain(error)}")
        if not down:
            result.after = images_usage(api).total
    except CONNECTION_ERRORS as error:
        result.errors.append(f"Cannot reach the Docker engine on {plan.host}: {connection_cause(error)}.")
    except docker.errors.APIError as error:
        result.errors.append(_explain(error))
    result.duration = time.monotonic() - started
    return result


# --------------------------------------------------------------------------------------------- messages

_SHOWN_ROWS = 20  # per table in a message; the attached file has them all
_CATEGORY_ORDER = [
    "in use", "excluded", "pinned", "too young", "keep-newest", "base image", "below threshold",
    "recently used", "conflict", "changed", "gone", "error", "not attempted",
]  # fmt: skip


def _tags(tags: list[str], width: int = 48) -> str:
    return ellipsis(", ".join(tags), width) if tags else "<none>"


def candidates_table(rows: list[Candidate], now: float) -> str:
    return fast_table(
        ["IMAGE ID", "TAGS", "SIZE", "CREATED", "LAST USED", "RULE"],
        [
            [
                short_id(c.image_id),
                _tags(c.tags),
                human_size(c.size),
                created_since(c.created, now),
                created_since(c.last_used, now) if c.last_used is not None else "never seen",
                c.rule,
            ]
            for c in rows
        ],
    )


def reasons_table(rows: list[Kept] | list[Skipped]) -> str:
    ordered = sorted(
        rows, key=lambda k: _CATEGORY_ORDER.index(k.category) if k.category in _CATEGORY_ORDER else 99
    )
    return fast_table(
        ["IMAGE ID", "TAGS", "SIZE", "WHY"],
        [[short_id(k.image_id), _tags(k.tags), human_size(k.size), k.reason] for k in ordered],
    )


def removed_table(rows: list[Removed]) -> str:
    return fast_table(
        ["IMAGE ID", "TAGS", "SIZE", "RULE"],
        [[short_id(r.image_id), _tags(r.tags), human_size(r.size), r.rule] for r in rows],
    )


def counts(rows: list[Kept] | list[Skipped]) -> str:
    by: dict[str, int] = {}
    for k in rows:
        by[k.category] = by.get(k.category, 0) + 1
    order = sorted(by, key=lambda c: _CATEGORY_ORDER.index(c) if c in _CATEGORY_ORDER else 99)
    return " · ".join(f"{by[c]} {c}" for c in order)


def folded(title: str, table: str, total: int) -> list[dict[str, Any]]:
    """A title and the first rows of a table; the rest are counted (the full list goes in a file)."""
    lines = table.split("\n")
    shown = lines[: _SHOWN_ROWS + 1]
    more = total - (len(shown) - 1)
    blocks = [section(title), *code_blocks("\n".join(shown))[:3]]
    if more > 0:
        blocks.append(context(f"…and {more:,} more (the attached file lists them all)"))
    return blocks


def summary_message(host_name: str, result: CleanupResult, next_run: datetime | None) -> Message:
    """One message per run: removed, Total reclaimed space, usage before → after, skipped and why,
    errors, duration and the next run. Long lists are folded; the full report is a file."""
    n = len(result.removed)
    failed = result.before is None and not result.removed
    title = (
        f"Cleanup on {host_name} could not run"
        if failed
        else f"Cleanup on {host_name}: {n} image{'s' if n != 1 else ''} removed, "
        f"{human_size(result.reclaimed, 4)} reclaimed"
    )
    usage = (
        f"{human_size(result.before, 4)} → {human_size(result.after, 4)}"
        if result.before is not None and result.after is not None
        else "unknown"
    )
    info = [
        ("Policy", f"`{ellipsis(result.policy_text, 200)}`"),
        ("Images on disk", usage),
        ("Duration", f"{result.duration:.1f}s"),
    ]
    if next_run is not None:  # scheduled runs get theirs from the scheduler
        info.append(("Next run", next_run.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")))
    if result.build_cache_reclaimed is not None:
        info.append(("Build cache", f"{human_size(result.build_cache_reclaimed, 4)} reclaimed"))
    blocks: list[dict[str, Any]] = [header(title)]
    if result.errors:
        blocks.append(section(":warning: " + "\n".join(result.errors)[:2900]))
    blocks.append(fields(info))
    if result.removed:
        blocks += folded(f"*Removed ({n})*", removed_table(result.removed), n)
    if result.skipped:
        blocks += folded(
            f"*Skipped ({len(result.skipped)}):* {counts(result.skipped)}",
            reasons_table(result.skipped),
            len(result.skipped),
        )
    notes = list(result.notes)
    if result.unmatched:
        notes.append(
            f"{result.unmatched} image{'s' if result.unmatched != 1 else ''} not matched by the policy"
        )
    if notes:
        blocks.append(context(ellipsis("; ".join(notes), 2900)))
    blocks.append(context(f"Total reclaimed space: {human_size(result.reclaimed, 4)}"))
    text = f"{title}. Total reclaimed space: {human_size(result.reclaimed, 4)}"
    if result.errors:
        text += " " + " ".join(result.errors)
    report = report_text(host_name, result, next_run)
    long = len(result.removed) > _SHOWN_ROWS or len(result.skipped) > _SHOWN_ROWS
    files = [File(f"cleanup-{host_name}.txt", report, title)] if long else []
    facts = {"reclaimed": result.reclaimed, "removed": n, "errors": len(result.errors)}
    return Message(text=text, blocks=blocks[: MAX_BLOCKS - 1], in_channel=True, files=files, facts=facts)


def report_text(host_name: str, result: CleanupResult, next_run: datetime | None) -> str:
    """The whole run as plain text: every engine line, every skipped image."""
    parts = [f"Cleanup on {host_name}", f"Policy: {result.policy_text}", ""]
    if result.errors:
        parts += ["Errors:", *result.errors, ""]
    if result.removed:
        parts += [f"Removed ({len(result.removed)}):", removed_table(result.removed), "", "Engine output:"]
        parts += [line for r in result.removed for line in r.lines] + [""]
    if result.skipped:
        parts += [f"Skipped ({len(result.skipped)}):", reasons_table(result.skipped), ""]
    parts.append(f"Total reclaimed space: {human_size(result.reclaimed, 4)}")
    if next_run:
        parts.append(f"Next run: {next_run.astimezone(UTC).strftime('%Y-%m-%d %H:%M UTC')}")
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------------------------- schedules


def ledger_of(services: Services) -> Ledger:
    """The process's ledger; a bare Services (a test, a one-off) gets one on the same database."""
    if services.ledger is None:
        from bot.ledger import Ledger

        services.ledger = Ledger(services.store.engine)
    return services.ledger


def run_cleanup(
    services: Services,
    host: DockerHost,
    policy: Policy,
    *,
    audit_as: tuple[str, str, str | None] = ("schedule", "-", None),
    next_run: datetime | None = None,
) -> Message:
    """Plan and run now, audited per image; the summary even when the engine is down."""
    user, channel, request_id = audit_as
    started = time.monotonic()
    try:
        plan = plan_cleanup(
            host.api, policy, host_name=host.name, ledger=ledger_of(services), now=time.time()
        )
    except (EngineUnavailable, *CONNECTION_ERRORS) as error:
        cause = error.cause if isinstance(error, EngineUnavailable) else connection_cause(error)
        result = CleanupResult(
            host.name, policy.text, errors=[f"Cannot reach the Docker engine on {host.name}: {cause}."]
        )
        result.duration = time.monotonic() - started
        return summary_message(host.name, result, next_run)
    except docker.errors.APIError as error:
        result = CleanupResult(host.name, policy.text, errors=[_explain(error)])
        return summary_message(host.name, result, next_run)
    return summary_message(
        host.name,
        execute_plan(
            services, host, plan, policy.build_cache, user=user, channel=channel, request_id=request_id
        ),
        next_run,
    )


def execute_plan(
    services: Services,
    host: DockerHost,
    plan: CleanupPlan,
    prune_build_cache: bool,
    *,
    user: str,
    channel: str,
    request_id: str | None,
) -> CleanupResult:
    store = services.store

    def audit(outcome: Removed | Skipped) -> None:
        result = "; ".join(outcome.lines) if isinstance(outcome, Removed) else f"skipped: {outcome.reason}"
        store.audit(
            user=user,
            channel=channel,
            host=host.name,
            action="cleanup.remove",
            image_id=outcome.image_id,
            tags=outcome.tags,
            result=result[:2000],
            request_id=request_id,
        )

    result = execute_cleanup(host.api, plan, prune_build_cache=prune_build_cache, on_done=audit)
    ledger = ledger_of(services)
    for removed in result.removed:
        ledger.forget(host.name, removed.image_id)
    return result


def run_scheduled_cleanup(services: Services, host: DockerHost, params: dict[str, Any]) -> Message:
    """What the scheduler calls for each run (params: {"policy": text}). Never raises."""
    try:
        policy = resolve_policy(params.get("policy"), services)
    except UserError as error:
        result = CleanupResult(host.name, str(params.get("policy") or ""), errors=[f"Bad policy: {error}"])
        return summary_message(host.name, result, None)
    try:
        return run_cleanup(services, host, policy)
    except Exception as error:  # a summary always goes out
        log.exception("scheduled cleanup on %s failed", host.name)
        result = CleanupResult(
            host.name, policy.text, errors=[f"The run failed: {type(error).__name__}: {error}"]
        )
        return summary_message(host.name, result, None)
