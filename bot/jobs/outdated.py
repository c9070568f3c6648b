"""Which local tags are behind their tag upstream (`/docker outdated`), and the schedule that says
so only when that changes.

For every tag on every host asked, the digest the host has is compared with the digest the registry
has for that tag now (bot/engine/registry.py: one HEAD per distinct repository:tag across the
fleet). Which local digest counts depends on the image store:

- overlay2 (classic): `RepoDigests` holds `repo@sha256:…`, the digest the image was pulled by (the
  index digest for a multi-platform tag). An image with no entry for its repository was built or
  loaded locally: "not from a registry", never outdated.
- containerd store: the image ID is the digest of what was pulled (index or manifest). Its
  `RepoDigests` cannot tell a pulled image from one built or tagged here (both carry
  `repo@<image ID>`, and tags sharing an image list one entry between them), so every tag is
  compared by the image ID; one that the registry does not have is "gone upstream, or built here".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import docker
import requests
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from bot.engine.fleet import fan_out
from bot.engine.hostinfo import image_store
from bot.engine.hosts import EngineUnavailable, connection_cause, connection_errors
from bot.engine.images import list_images
from bot.engine.reference import InvalidReference, Reference, parse_reference
from bot.engine.registry import CURRENT, GONE, RegistryClient, RemoteDigest
from bot.render.formatting import created_since, ellipsis, format_table
from bot.render.messages import Block, Message, actions, button, code_blocks, context, header, section
from bot.state.tables import outdated_posts

if TYPE_CHECKING:
    from bot.core.services import Services
    from bot.engine.hosts import DockerHost
    from bot.jobs.scheduler import Schedule

log = logging.getLogger("dockerbot.outdated")

PULL_ACTION = "outdated.pull"
MAX_BUTTONS = 20  # Pull buttons in one message (the rest: `/docker pull` by hand)
MAX_VALUE = 2000  # Slack's limit for a button's value
NAME_WIDTH = 40


# --------------------------------------------------------------------------------------------- facts


@dataclass(frozen=True)
class LocalTag:
    """One tag on one host, with the digests that host knows the image by for that repository."""

    host: str
    ref: Reference  # with its tag
    image_id: str
    created: float | None
    digests: frozenset[str]
    from_registry: bool  # False: built or loaded here (no digest for this repository)
    containerd: bool = False  # the containerd image store: compared by image ID


@dataclass
class Finding:
    """One row: a repository:tag and what its hosts have against what the registry has."""

    ref: Reference
    state: str  # outdated, gone, unknown
    remote: RemoteDigest
    # (host, local digest, built) for each host whose copy differs (outdated) or that has the tag.
    hosts: list[tuple[str, str, float | None]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.ref.familiar()


@dataclass
class OutdatedResult:
    hosts: list[str]  # the hosts asked
    failed: dict[str, str]  # host -> why it could not be asked
    outdated: list[Finding]
    gone: list[Finding]
    unknown: list[Finding]
    current: int  # tags (per host) that match the registry
    local_only: list[tuple[str, str]]  # (host, tag) built or loaded locally
    requests: int  # registry requests sent
    lookups: int  # distinct repository:tag looked up
    containerd_hosts: frozenset[str] = frozenset()  # hosts on the containerd image store


def local_digest(tag: LocalTag) -> str:
    """The digest to show for a host's copy: the one it was pulled by."""
    if tag.digests:
        return sorted(tag.digests)[0]
    return tag.image_id


def host_tags(host: DockerHost, wanted: Reference | None = None) -> list[LocalTag]:
    """Every tag on `host` (or only those matching `wanted`: same repository, same tag if given)."""
    api = host.api
    containerd = image_store(api.info()).startswith("containerd")
    found: list[LocalTag] = []
    for summary in list_images(api):
        by_repo: dict[str, set[str]] = {}
        for entry in summary.get("RepoDigests") or []:
            name, _, digest = entry.partition("@")
            try:
                by_repo.setdefault(parse_reference(name).name, set()).add(digest)
            except InvalidReference:
                continue
        for text in summary.get("RepoTags") or []:
            if "@" in text:  # the containerd store's digest-only record: no tag
                continue
            try:
                ref = parse_reference(text).with_default_tag()
            except InvalidReference:
                continue
            if wanted is not None and (
                ref.name != wanted.name or (wanted.tag is not None and ref.tag != wanted.tag)
            ):
                continue
            if containerd:  # the ID is the digest it was pulled by; nothing says it was pulled
                digests, from_registry = {summary["Id"]}, True
            else:
                digests = set(by_repo.get(ref.name, ()))
                from_registry = bool(digests)
            found.append(
                LocalTag(
                    host=host.name,
                    ref=ref,
                    image_id=summary["Id"],
                    created=summary.get("Created"),
                    digests=frozenset(digests),
                    from_registry=from_registry,
                    containerd=containerd,
                )
            )
    return found


def registry_client(services: Services) -> RegistryClient:
    settings = services.settings
    return RegistryClient(
        hub_registry_url=settings.hub_registry_url,
        credentials=settings.registry_auth,
        timeout=settings.registry_timeout,
        concurrency=settings.registry_concurrency,
    )


def check(services: Services, hosts: list[DockerHost], wanted: Reference | None = None) -> OutdatedResult:
    """Every host's tags in parallel (each with the fleet deadline), then one registry lookup per
    distinct repository:tag. Registry problems end up in `unknown`, never as an exception."""
    timeout = services.settings.host_timeout
    results = fan_out(hosts, lambda host: host_tags(host, wanted), timeout)
    failed: dict[str, str] = {}
    tags: list[LocalTag] = []
    for result in results:
        if result.ok and result.value is not None:
            tags += result.value
        else:
            failed[result.host] = _why(result.error, result.timed_out, timeout, services, result.host)
    checked = [t for t in tags if t.from_registry]
    with registry_client(services) as client:
        remote = client.lookup_many(t.ref for t in checked)
        requests_sent = client.requests
    rows: dict[tuple[str, str, str], Finding] = {}
    current = 0
    for tag in checked:
        answer = remote[(tag.ref.name, tag.ref.tag or "latest")]
        if answer.state == CURRENT and answer.digest in tag.digests:
            current += 1
            continue
        state = "outdated" if answer.state == CURRENT else ("gone" if answer.state == GONE else "unknown")
        key = (state, tag.ref.name, tag.ref.tag or "latest")
        finding = rows.setdefault(key, Finding(tag.ref, state, answer))
        finding.hosts.append((tag.host, local_digest(tag), tag.created))
    by_state: dict[str, list[Finding]] = {"outdated": [], "gone": [], "unknown": []}
    for finding in sorted(rows.values(), key=lambda f: f.name):
        finding.hosts.sort()
        by_state[finding.state].append(finding)
    return OutdatedResult(
        hosts=[h.name for h in hosts],
        failed=failed,
        outdated=by_state["outdated"],
        gone=by_state["gone"],
        unknown=by_state["unknown"],
        current=current,
        local_only=sorted((t.host, t.ref.familiar()) for t in tags if not t.from_registry),
        requests=requests_sent,
        lookups=len(remote),
        containerd_hosts=frozenset(t.host for t in tags if t.containerd),
    )


def _why(
    error: BaseException | None, timed_out: bool, timeout: float, services: Services, host_name: str
) -> str:
    if timed_out:
        return f"did not answer within {timeout:g} s"
    host = services.hosts.get(host_name)
    if isinstance(error, EngineUnavailable):
        return error.cause
    if isinstance(error, connection_errors()):
        return str(EngineUnavailable(host, connection_cause(error)).cause)
    if isinstance(error, docker.errors.APIError):
        return f"Error response from daemon: {error.explanation or error}"
    if isinstance(error, (docker.errors.DockerException, requests.exceptions.RequestException)):
        return f"the engine answered unexpectedly ({type(error).__name__})"
    log.error("outdated: listing %s failed", host_name, exc_info=error)
    return "something went wrong; the details are in the bot's log"


# --------------------------------------------------------------------------------------------- message


def _short(digest: str | None) -> str:
    if not digest:
        return "-"
    algo, _, hexpart = digest.partition(":")
    return f"{algo}:{hexpart[:12]}" if hexpart else digest[:19]


def _hosts_cell(finding: Finding) -> str:
    return ",".join(dict.fromkeys(h for h, _, _ in finding.hosts))


def outdated_table(findings: list[Finding], now: float | None = None) -> str:
    pushed = any(f.remote.pushed for f in findings)  # only where the registry says (Last-Modified)
    rows = []
    for f in findings:
        # Hosts with the same local copy share a row; a host with an older copy gets its own.
        groups: dict[tuple[str, float | None], list[str]] = {}
        for host, digest, built in f.hosts:
            groups.setdefault((digest, built), []).append(host)
        for (digest, built), names in groups.items():
            rows.append(
                [
                    ellipsis(f.ref.familiar_name, NAME_WIDTH),
                    f.ref.tag or "latest",
                    _short(digest),
                    created_since(built, now),
                    _short(f.remote.digest),
                    *([created_since(f.remote.pushed, now) if f.remote.pushed else "-"] if pushed else []),
                    ",".join(names),
                ]
            )
    headers = ["IMAGE", "TAG", "LOCAL DIGEST", "BUILT", "REGISTRY DIGEST", *(["PUSHED"] if pushed else [])]
    return format_table([*headers, "HOSTS"], rows)


def gone_table(findings: list[Finding]) -> str:
    rows = [
        [ellipsis(f.ref.familiar_name, NAME_WIDTH), f.ref.tag or "latest", _hosts_cell(f)] for f in findings
    ]
    return format_table(["IMAGE", "TAG", "HOSTS"], rows)


def unknown_table(findings: list[Finding]) -> str:
    rows = [
        [ellipsis(f.ref.familiar_name, NAME_WIDTH), f.ref.tag or "latest", _hosts_cell(f), f.remote.reason]
        for f in findings
    ]
    return format_table(["IMAGE", "TAG", "HOSTS", "WHY UNKNOWN"], rows)


def pull_value(finding: Finding) -> str:
    """What a Pull button carries: the tag, then the hosts whose copy is behind (tab-separated)."""
    return "\t".join([finding.ref.familiar(), *dict.fromkeys(h for h, _, _ in finding.hosts)])


def pull_buttons(findings: list[Finding]) -> list[Block]:
    # Slack takes at most 2,000 characters in a button's value: a row naming more hosts than fit
    # gets no button (the table still names them).
    fitting = [f for f in findings if len(pull_value(f)) <= MAX_VALUE][:MAX_BUTTONS]
    # Slack wants every action_id of a message unique: each button has its own key.
    buttons = [
        button(f"Pull {f.name}", PULL_ACTION, value=pull_value(f), key=str(i)) for i, f in enumerate(fitting)
    ]
    return [
        actions(*buttons[i : i + 5], block_id=f"outdated.pull.{i // 5}") for i in range(0, len(buttons), 5)
    ]


def where(result: OutdatedResult) -> str:
    return f"host {result.hosts[0]}" if len(result.hosts) == 1 else f"{len(result.hosts)} hosts"


def result_message(result: OutdatedResult, wanted: Reference | None = None) -> Message:
    """The reply (and a schedule's post): outdated rows with Pull buttons, gone, unknown, a summary."""
    what = wanted.familiar() if wanted else "images"
    n = len(result.outdated)
    headline = (
        f"{n} outdated image{'s' if n != 1 else ''} on {where(result)}"
        if n
        else f"No outdated {what} on {where(result)}"
    )
    if not n and (result.unknown or result.failed):
        headline += " (some could not be checked)"
    blocks: list[Block] = [header(headline)]
    if result.outdated:
        blocks += code_blocks(outdated_table(result.outdated))
        blocks += pull_buttons(result.outdated)
    if result.gone:
        note = "the registry no longer has these tags."
        if any(h in result.containerd_hosts for f in result.gone for h, _, _ in f.hosts):
            note += " On the containerd image store an image built or tagged locally looks the same."
        blocks.append(section(f"*Gone upstream ({len(result.gone)})*: {note}"))
        blocks += code_blocks(gone_table(result.gone))
    if result.unknown:
        blocks.append(
            section(
                f"*Unknown ({len(result.unknown)})*: the registry could not say; checked again next time."
            )
        )
        blocks += code_blocks(unknown_table(result.unknown))
    for host, why in sorted(result.failed.items()):
        blocks.append(section(f":x: *{host}* — not checked: {why}"))
    blocks.append(context(summary_line(result)))
    text = headline
    if result.gone:
        text += f"; {len(result.gone)} gone upstream"
    if result.unknown:
        text += f"; {len(result.unknown)} unknown"
    return Message(text=text, blocks=blocks, in_channel=True)


def summary_line(result: OutdatedResult) -> str:
    parts = [
        f"{result.current} up to date",
        f"{len(result.outdated)} outdated",
        f"{len(result.gone)} gone upstream",
        f"{len(result.unknown)} unknown",
    ]
    local = len(result.local_only)
    if local:
        parts.append(f"{local} not from a registry (built or loaded locally)")
    tags = f"{result.lookups} tag{'s' if result.lookups != 1 else ''}"
    sent = f"{tags} looked up with {result.requests} registry request{'s' if result.requests != 1 else ''}"
    return " · ".join(parts) + f" · {sent}"


# --------------------------------------------------------------------------------------------- schedule

# The set a schedule posted last: {"host|name:tag": {"state": …, "local": digest, "remote": digest}}.
Entries = dict[str, dict[str, str]]


def entries_of(result: OutdatedResult) -> tuple[Entries, set[str]]:
    """What this run knows (outdated and gone, per host and tag) and the keys it could not tell."""
    known: Entries = {}
    unsure: set[str] = set()
    for finding in [*result.outdated, *result.gone]:
        for host, digest, _ in finding.hosts:
            known[f"{host}|{finding.ref.canonical()}"] = {
                "state": finding.state,
                "local": digest,
                "remote": finding.remote.digest or "",
            }
    for finding in result.unknown:
        unsure.update(f"{host}|{finding.ref.canonical()}" for host, _, _ in finding.hosts)
    return known, unsure


def merge_unsure(known: Entries, unsure: set[str], failed_hosts: Iterable[str], last: Entries) -> Entries:
    """This run's set, with what the last post said kept where this run could not tell (registry
    unreachable for that tag, or the host down): a flaky registry is not a change."""
    down = set(failed_hosts)
    merged = dict(known)
    for key, entry in last.items():
        host = key.partition("|")[0]
        if key not in merged and (key in unsure or host in down):
            merged[key] = entry
    return merged


@dataclass(frozen=True)
class Changes:
    new: list[str]
    updated: list[str]
    resolved: list[str]

    def __bool__(self) -> bool:
        return bool(self.new or self.updated or self.resolved)


def compare(last: Entries, now: Entries) -> Changes:
    def label(key: str) -> str:
        host, _, ref = key.partition("|")
        try:
            shown = parse_reference(ref).familiar()
        except InvalidReference:
            shown = ref
        return f"{shown} on {host}"

    return Changes(
        new=sorted(label(k) for k in now.keys() - last.keys()),
        updated=sorted(label(k) for k in now.keys() & last.keys() if now[k] != last[k]),
        resolved=sorted(label(k) for k in last.keys() - now.keys()),
    )


def last_posted(engine: Engine, schedule_id: str) -> Entries:
    with engine.connect() as conn:
        row = conn.execute(
            select(outdated_posts.c.entries).where(outdated_posts.c.schedule_id == schedule_id)
        ).first()
    return dict(row[0]) if row and isinstance(row[0], dict) else {}


def remember_posted(engine: Engine, schedule_id: str, entries: Entries) -> None:
    values = {"schedule_id": schedule_id, "posted_at": time.time(), "entries": entries}
    update = {"posted_at": values["posted_at"], "entries": entries}
    with engine.begin() as conn:
        dialect = conn.dialect.name
        if dialect == "postgresql":
            stmt: Any = postgresql.insert(outdated_posts).values(**values)
            conn.execute(stmt.on_conflict_do_update(index_elements=["schedule_id"], set_=update))
        elif dialect == "sqlite":
            stmt = sqlite.insert(outdated_posts).values(**values)
            conn.execute(stmt.on_conflict_do_update(index_elements=["schedule_id"], set_=update))
        else:  # pragma: no cover - the bot supports SQLite and PostgreSQL
            conn.execute(outdated_posts.delete().where(outdated_posts.c.schedule_id == schedule_id))
            conn.execute(outdated_posts.insert().values(**values))


def _changes_text(changes: Changes, limit: int = 10) -> str:
    def some(items: list[str]) -> str:
        shown = ", ".join(items[:limit])
        return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")

    parts = []
    if changes.new:
        parts.append(f"new: {some(changes.new)}")
    if changes.updated:
        parts.append(f"updated (another digest upstream or here): {some(changes.updated)}")
    if changes.resolved:
        parts.append(f"no longer outdated: {some(changes.resolved)}")
    return "*Since the last post* — " + "; ".join(parts)


def run_scheduled_outdated(services: Services, hosts: list[DockerHost], schedule: Schedule) -> Message | None:
    """The scheduler's runner for the whole fleet at once: a message only when the set of outdated
    (and gone) images changed since this schedule last posted; otherwise None and an audit entry."""
    wanted = parse_reference(schedule.params["image"]) if schedule.params.get("image") else None
    result = check(services, hosts, wanted)
    last = last_posted(services.store.engine, schedule.id)
    known, unsure = entries_of(result)
    now = merge_unsure(known, unsure, result.failed, last)
    changes = compare(last, now)
    audit = dict(
        user=schedule.created_by,
        channel=schedule.channel,
        host=schedule.host,
        action="outdated.scheduled",
    )
    if not changes:
        services.store.audit(
            **audit,
            result=(
                f"nothing new: schedule {schedule.id}, {len(result.outdated)} outdated, "
                f"{len(result.gone)} gone upstream, {len(result.unknown)} unknown"
                + (f", not checked: {', '.join(sorted(result.failed))}" if result.failed else "")
            )[:2000],
        )
        return None
    remember_posted(services.store.engine, schedule.id, now)
    services.store.audit(
        **audit,
        result=(
            f"posted: schedule {schedule.id}, {len(changes.new)} new, {len(changes.updated)} updated, "
            f"{len(changes.resolved)} no longer outdated"
        )[:2000],
    )
    message = result_message(result, wanted)
    message.blocks.insert(1, section(ellipsis(_changes_text(changes), 2900)))
    return message
