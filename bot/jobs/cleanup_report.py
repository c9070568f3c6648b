"""What a plan and a run look like: the preview (a plan), the one summary a run posts, their tables.

Long lists are folded to their first rows; the whole list goes in an attached file."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bot.render.formatting import created_since, ellipsis, format_table, human_size, short_id
from bot.render.messages import File, Message, code_blocks, context, fields, header, section

if TYPE_CHECKING:
    from bot.jobs.cleanup_plan import Candidate, CleanupPlan, Kept
    from bot.jobs.cleanup_run import CleanupResult, Removed, Skipped
    from bot.jobs.policy import Policy

_SHOWN_ROWS = 20  # per table in a message; the attached file has them all
_CATEGORY_ORDER = [
    "in use", "excluded", "pinned", "too young", "keep-newest", "base image", "below threshold",
    "recently used", "conflict", "changed", "gone", "error", "not attempted",
]  # fmt: skip


def _rank(category: str) -> int:
    return _CATEGORY_ORDER.index(category) if category in _CATEGORY_ORDER else 99


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


def _tags(tags: list[str], width: int = 48) -> str:
    return ellipsis(", ".join(tags), width) if tags else "<none>"


def candidates_table(rows: list[Candidate], now: float) -> str:
    return format_table(
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
    ordered = sorted(rows, key=lambda k: _rank(k.category))
    return format_table(
        ["IMAGE ID", "TAGS", "SIZE", "WHY"],
        [[short_id(k.image_id), _tags(k.tags), human_size(k.size), k.reason] for k in ordered],
    )


def removed_table(rows: list[Removed]) -> str:
    return format_table(
        ["IMAGE ID", "TAGS", "SIZE", "RULE"],
        [[short_id(r.image_id), _tags(r.tags), human_size(r.size), r.rule] for r in rows],
    )


def counts(rows: list[Kept] | list[Skipped]) -> str:
    by: dict[str, int] = {}
    for k in rows:
        by[k.category] = by.get(k.category, 0) + 1
    order = sorted(by, key=_rank)
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


def preview_message(plan: CleanupPlan, policy: Policy, title: str | None = None) -> Message:
    """Exactly what a run would remove now (tags, IDs, sizes, the rule), what it keeps and why."""
    n = len(plan.candidates)
    title = title or f"Cleanup preview on {plan.host}"
    what = (
        f"Would remove *{_plural(n, 'image')}*, freeing at least *{human_size(plan.frees, 4)}*."
        if n
        else "*Nothing to remove* under this policy now."
    )
    blocks: list[dict[str, Any]] = [
        header(title),
        section(f"{what}\nPolicy: `{ellipsis(policy.title, 500)}`"),
    ]
    removing, keeping = candidates_table(plan.candidates, plan.now), reasons_table(plan.kept)
    if n:
        blocks += folded(f"*Would remove ({n})*", removing, n)
    if plan.kept:
        blocks += folded(f"*Kept ({len(plan.kept)}):* {counts(plan.kept)}", keeping, len(plan.kept))
    notes = list(plan.notes)
    if plan.unmatched:
        notes.append(f"{_plural(plan.unmatched, 'other image')} not matched by the policy")
    if plan.build_cache is not None:
        notes.append(f"build cache: {human_size(plan.build_cache, 4)} reclaimable would be pruned")
    notes.append(f"images use {human_size(plan.images_total, 4)} on disk")
    blocks.append(context(ellipsis("; ".join(notes), 2900)))
    files = []
    if n > _SHOWN_ROWS or len(plan.kept) > _SHOWN_ROWS:
        report = (
            f"{title}\nPolicy: {policy.text}\n\nWould remove ({n}):\n{removing}\n\n"
            f"Kept ({len(plan.kept)}):\n{keeping}\n"
        )
        files.append(File(f"cleanup-preview-{plan.host}.txt", report, title))
    text = f"{title}: would remove {n} images, freeing at least {human_size(plan.frees, 4)}"
    return Message(text=text, blocks=blocks, files=files)


def reclaimed_text(result: CleanupResult) -> str:
    """The df difference, or "unknown" when the engine refused a df (the notes say why)."""
    if not result.ran or result.reclaimed_known:
        return human_size(result.reclaimed, 4)
    return "unknown"


def summary_message(host_name: str, result: CleanupResult) -> Message:
    """One message per run: removed, Total reclaimed space, usage before → after, skipped and why,
    errors and duration (the scheduler adds a schedule's next run). Long lists are folded; the full
    report is a file."""
    n = len(result.removed)
    failed = not result.ran and not result.removed
    total = reclaimed_text(result)
    title = (
        f"Cleanup on {host_name} could not run"
        if failed
        else f"Cleanup on {host_name}: {_plural(n, 'image')} removed, "
        + (f"{total} reclaimed" if result.reclaimed_known else "reclaimed space unknown")
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
        notes.append(f"{_plural(result.unmatched, 'image')} not matched by the policy")
    if notes:
        blocks.append(context(ellipsis("; ".join(notes), 2900)))
    # `docker image prune` reports the image content it deleted; on the containerd store that leaves out
    # the unpacked snapshots, so its figure is a fraction of what the disk gets back. Ours is the df
    # difference, and the reply says so (README, "Image stores").
    blocks.append(
        context(
            f"Total reclaimed space: {total}"
            " (images on disk before minus after, as `docker system df` counts them)"
        )
    )
    text = f"{title}. Total reclaimed space: {total}"
    if result.errors:
        text += " " + " ".join(result.errors)
    report = report_text(host_name, result)
    long = len(result.removed) > _SHOWN_ROWS or len(result.skipped) > _SHOWN_ROWS
    files = [File(f"cleanup-{host_name}.txt", report, title)] if long else []
    facts = {"reclaimed": result.reclaimed, "removed": n, "errors": len(result.errors)}
    return Message(text=text, blocks=blocks, in_channel=True, files=files, facts=facts)


def report_text(host_name: str, result: CleanupResult) -> str:
    """The whole run as plain text: every engine line, every skipped image."""
    parts = [f"Cleanup on {host_name}", f"Policy: {result.policy_text}", ""]
    if result.errors:
        parts += ["Errors:", *result.errors, ""]
    if result.removed:
        parts += [f"Removed ({len(result.removed)}):", removed_table(result.removed), "", "Engine output:"]
        parts += [line for r in result.removed for line in r.lines] + [""]
    if result.skipped:
        parts += [f"Skipped ({len(result.skipped)}):", reasons_table(result.skipped), ""]
    parts.append(f"Total reclaimed space: {reclaimed_text(result)}")
    return "\n".join(parts) + "\n"
