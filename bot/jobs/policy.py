"""The cleanup policy language: rules, parsed and normalised, and policies named in config files.

A policy is a list of rules. Selectors say which images are candidates (`dangling`, `unused`,
`unused-since`; `disk-threshold` alone selects every unused image, least recently used first);
the other rules protect candidates (bot/jobs/cleanup_plan.py applies them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bot.errors import UserError

DEFAULT_GRACE = 3600.0
RULES_HELP = (
    "dangling · unused [--older-than 30d] · unused-since 14d · keep-newest N · grace 1h · "
    "exclude GLOB|label=K[=V] · pin GLOB · disk-threshold HIGH LOW · build-cache"
)

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


def check_policies(named: dict[str, str]) -> dict[str, Policy]:
    """Parse named policies (`policies:` in DOCKERBOT_CONFIG) at start: a bad one names itself."""
    parsed = {}
    for name, text in named.items():
        if not _POLICY_NAME.fullmatch(name) or name.lower() in _RULE_WORDS:
            raise UserError(
                f"policies: `{name}` cannot name a policy (letters, digits, . _ -; not a rule name)."
            )
        try:
            parsed[name] = parse_policy(text, name=name)
        except UserError as error:
            raise UserError(f"policies: `{name}`: {error}") from None
    return parsed


def named_policies(services: Any) -> dict[str, Policy]:
    """Named policies: `policies:` in the bot's config (DOCKERBOT_CONFIG)."""
    return check_policies(getattr(services, "policies", None) or {})


def resolve_policy(text: str | None, services: Any) -> Policy:
    """A named policy, else the rules as written. None given: the policy named `default`, else `dangling`."""
    text = (text or "").strip()
    named = named_policies(services)
    if text in named:
        return named[text]
    if not text and "default" in named:
        return named["default"]
    return parse_policy(text)
