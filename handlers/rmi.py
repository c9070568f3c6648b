"""/docker rmi REF [REF...] [--force] [--no-prune]: a confirmation card first, removal on Confirm.

Nothing is removed by the command itself. The card's buttons carry only an opaque id; the
plan (who asked, where, which host, which image IDs behind which tags, until when) is kept
in the bot's database, claimed atomically on Confirm, and checked again against the engine
before anything is removed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import docker

from bot import metrics
from bot.core import confirmations
from bot.core.commands import ActionRequest, ArgParser, Command, Reply, Request, UserError
from bot.engine.diskusage import ImagesUsage, images_usage
from bot.engine.hostinfo import image_store
from bot.engine.hosts import connection_errors
from bot.engine.images import (
    AmbiguousImage,
    ImageIndex,
    NoSuchImage,
    container_name,
    images_in_use,
    list_images,
)
from bot.engine.reference import InvalidReference, familiar, looks_like_id, parse_reference
from bot.engine.removal import Seen, explain, recheck, remove
from bot.render.formatting import human_size, short_id
from bot.render.messages import Message, code_blocks, context, header, mention, plain, section, sections
from bot.state.store import PendingAction

MAX_REFS = 50


def add_arguments(parser: ArgParser) -> None:
    parser.add_argument("refs", nargs="+", metavar="REF", help="name[:tag], name@digest, ID or ID prefix")
    parser.add_argument("-f", "--force", action="store_true", help="remove all tags; stopped containers too")
    parser.add_argument("--no-prune", action="store_true", help="keep untagged parent images")


@dataclass
class Planned:
    """One image on the card, and what the engine is expected to do with it."""

    ref: str  # as the user typed it
    image_id: str
    by_tag: str | None  # the tag (familiar form) to untag, when the ref named one
    tags: list[str]  # the image's tags when the card was made
    untag: list[str]  # tags the card says will go
    deletes: bool  # whether the image itself is expected to be deleted
    frees: int  # bytes deleting it frees (its layers no other image uses)
    keeps: int  # bytes that stay: layers shared with other images
    containers: list[str] = field(default_factory=list)  # "name (id12, running)"
    refusal: str = ""  # the conflict the engine is expected to answer with
    shared_goes: bool = False  # every image sharing its layers goes on this card: `keeps` is freed too


# --------------------------------------------------------------------------------------------- plan


def _is_id_ref(ref: str, index: ImageIndex) -> bool:
    """The engine treats a ref as an ID unless it names a tag or digest (image_delete.go)."""
    if not looks_like_id(ref):
        return False
    try:
        return index.by_reference(parse_reference(ref)) is None
    except InvalidReference:
        return True


def plan_image(
    ref: str,
    image: dict[str, Any],
    index: ImageIndex,
    used: dict[str, list[dict[str, Any]]],
    usage: ImagesUsage,
    force: bool,
    containerd: bool = False,
) -> Planned:
    """Predict what the engine will do, by the rules of moby's daemon/images/image_delete.go (ImageDelete),
    or on the containerd store daemon/containerd/image_delete.go (README, "Image stores").

    The engine has the last word: the result after Confirm shows what it really did."""
    tags = list(image["RepoTags"])
    # The classic store keeps repo@digest references of their own; the containerd store derives
    # RepoDigests from its image records (tags, and names pulled by digest only: DigestRefs).
    digest_refs = list(image.get("DigestRefs") or []) if containerd else list(image["RepoDigests"])
    refs_total = len(tags) + len(digest_refs)
    containers = used.get(image["Id"], [])
    running = [c for c in containers if c.get("State") == "running"]
    described = [f"{container_name(c)} ({short_id(c['Id'])}, {c.get('State', '?')})" for c in containers]
    # The containerd store keeps no parent chain: it never refuses for dependent child images.
    children = [i for i in index.images if i.get("ParentId") == image["Id"]] if not containerd else []
    disk = usage.images.get(image["Id"])
    frees, keeps = (disk.unique, disk.size - disk.unique) if disk else (image.get("Size") or 0, 0)

    if not _is_id_ref(ref, index):
        tag = familiar(ref) if "@" in ref else parse_reference(ref).with_default_tag().familiar()
        repo = parse_reference(tag).name
        others = [t for t in tags if familiar(t) != tag]
        same_repo_tag_left = any(parse_reference(t).name == repo for t in others)
        if containerd and "@" in ref:
            # name@digest removes every record of that repository pointing at the image.
            same_repo = [familiar(r) for r in [*tags, *digest_refs] if parse_reference(r).name == repo]
            untag = same_repo or [tag]
        elif containerd:
            untag = [tag]
        else:
            untag = [tag] + (
                []
                if same_repo_tag_left
                else [familiar(d) for d in digest_refs if parse_reference(d).name == repo]
            )
        untag = list(dict.fromkeys(untag))  # a digest ref is also the repository's digest
        remaining = refs_total - len(untag)
        plan = Planned(ref, image["Id"], tag, tags, untag, remaining <= 0, frees, keeps, described)
        if remaining <= 0:
            if containers and not force:
                plan.refusal = (
                    f"container {short_id(containers[0]['Id'])} is using it — untagging needs --force"
                )
                plan.deletes, plan.untag = False, []
            elif containers:  # with force the tag goes, the image stays for its containers
                plan.deletes = False
            elif children:
                plan.refusal = "it has dependent child images"
                plan.deletes = False
        return plan

    untag_all = [*tags, *(familiar(d) for d in image.get("DigestRefs") or [])] if containerd else tags
    plan = Planned(ref, image["Id"], None, tags, untag_all, True, frees, keeps, described)
    single = len(tags) <= 1 and len({parse_reference(r).name for r in [*tags, *image["RepoDigests"]]}) <= 1
    if running:
        plan.refusal = f"running container {short_id(running[0]['Id'])} uses it — not even --force removes it"
    elif children:
        plan.refusal = "it has dependent child images"
    elif not force and not single:
        plan.refusal = (
            "it is referenced in multiple repositories — use --force, or remove the tags one by one"
        )
    elif not force and containers:
        plan.refusal = f"stopped container {short_id(containers[0]['Id'])} uses it — use --force"
    if plan.refusal:
        plan.deletes, plan.untag = False, []
    return plan


def run(req: Request, reply: Reply) -> None:
    store = req.services.store
    audit = dict(user=req.user, channel=req.channel, host=req.host.name, request_id=req.request_id)
    refs: list[str] = req.args.refs
    if len(refs) > MAX_REFS:
        raise UserError(f"That is {len(refs):,} images; at most {MAX_REFS} at once.")
    api = req.host.api
    index = ImageIndex(list_images(api, all=True))
    used = images_in_use(api)
    usage = images_usage(api)
    containerd = image_store(api.info()).startswith("containerd")
    plans: list[Planned] = []
    problems: list[str] = []
    resolved: list[tuple[str, dict[str, Any]]] = []
    for ref in dict.fromkeys(refs):
        try:
            resolved.append((ref, index.resolve(ref)))
        except AmbiguousImage as error:
            problems.append(str(error).removeprefix("Error: "))
        except NoSuchImage as error:
            problems.append(str(error))
    seen: set[tuple[str, str | None]] = set()
    after: dict[str, dict[str, Any]] = {}  # each image as the card's earlier refs leave it
    for ref, image in _once_per_image(resolved, index):
        if (image["Id"], _tag_of(ref, index)) in seen:
            continue
        plan = plan_image(ref, after.get(image["Id"], image), index, used, usage, req.args.force, containerd)
        after[plan.image_id] = _without(after.get(image["Id"], image), plan.untag)
        plan.tags = list(image["RepoTags"])  # as the card found them: the re-check compares with these
        seen.add((plan.image_id, plan.by_tag))
        plans.append(plan)
    exact = _mark_shared_layers_freed(plans, usage)
    if not plans:
        reply.send(plain("Nothing to remove.\n" + "\n".join(problems)))
        return
    pending = store.create_pending(
        kind="rmi",
        user=req.user,
        channel=req.channel,
        host=req.host.name,
        payload={
            "plans": [asdict(p) for p in plans],
            "force": req.args.force,
            "noprune": req.args.no_prune,
            "frees": card_frees(plans, usage, exact),
            # The containerd store's df counts compressed layers other images share as the image's own.
            "frees_at_most": containerd and not exact,
        },
        ttl=req.services.settings.confirm_ttl,
    )
    for plan in plans:
        store.audit(
            **audit, action="rmi.preview", image_id=plan.image_id, tags=plan.untag, result="card posted"
        )
    reply.send(card(pending, plans, problems))


def _tag_of(ref: str, index: ImageIndex) -> str | None:
    if _is_id_ref(ref, index):
        return None
    return familiar(ref) if "@" in ref else parse_reference(ref).with_default_tag().familiar()


def _without(image: dict[str, Any], untag: list[str]) -> dict[str, Any]:
    """The image as the engine leaves it once `untag` are removed: the next ref on the card is
    planned against that (`rmi nginx nginx:two` deletes at the second ref, as the CLI does)."""
    gone = set(untag)
    keep = {
        key: [r for r in image.get(key) or [] if familiar(r) not in gone]
        for key in ("RepoTags", "DigestRefs")
    }
    keep["RepoDigests"] = [r for r in image["RepoDigests"] if familiar(r) not in gone]
    return {**image, **keep}


def _once_per_image(
    resolved: list[tuple[str, dict[str, Any]]], index: ImageIndex
) -> list[tuple[str, dict[str, Any]]]:
    """An image named by ID (removed whole) and also by a tag is listed once, as the ID, where it is
    first named: its tags go with it, and the CLI would only add "No such image" for the others."""
    by_id = {}
    for ref, image in resolved:
        if _is_id_ref(ref, index):
            by_id.setdefault(image["Id"], ref)
    out, done = [], set()
    for ref, image in resolved:
        if image["Id"] in by_id:
            if image["Id"] in done:
                continue
            done.add(image["Id"])
            ref = by_id[image["Id"]]
        out.append((ref, image))
    return out


def _mark_shared_layers_freed(plans: list[Planned], usage: ImagesUsage) -> bool:
    """True when no image the card keeps shares a layer with any other: then the layers the deleted
    images share among themselves are freed too, and the estimate is exact. The df figures say how
    many bytes each image shares, not with which image, so only then is it known; otherwise each
    deleted image's shared bytes are counted as staying."""
    deleting = {p.image_id for p in plans if p.deletes}
    kept = [d for image_id, d in usage.images.items() if image_id not in deleting]
    if not (deleting and usage.images and deleting <= usage.images.keys()):
        return False
    if not all(d.shared == 0 for d in kept):
        return False
    for p in plans:
        p.shared_goes = p.deletes and p.keeps > 0
    return True


def card_frees(plans: list[Planned], usage: ImagesUsage, exact: bool) -> int:
    """Bytes the card frees: when `exact`, all image bytes but the kept images' (which share nothing,
    so each counts its full size); otherwise each deleted image's own layers."""
    if exact:
        deleting = {p.image_id for p in plans if p.deletes}
        kept = sum(d.size for image_id, d in usage.images.items() if image_id not in deleting)
        return max(usage.total - kept, 0)
    return sum(p.frees for p in plans if p.deletes)


def _plan_text(plan: Planned, earlier: set[str]) -> str:
    """One plan's line; `earlier`: refs of its image untagged by the card's earlier lines."""
    name = f"`{plan.ref}` → `{short_id(plan.image_id)}`"
    if plan.refusal:
        lines = [f":no_entry: {name} — the engine will refuse: {plan.refusal}."]
    elif plan.deletes:
        kept = f"; {human_size(plan.keeps)} stays in layers other images share" if plan.keeps else ""
        if plan.shared_goes:
            kept = f"; its {human_size(plan.keeps)} shared with other images on this card goes with them"
        tags = ", ".join(f"`{t}`" for t in plan.untag) or "no tags"
        freed = human_size(plan.frees)
        lines = [f":wastebasket: {name} — untag {tags} and *delete* the image: frees {freed}{kept}."]
    else:
        gone = {*plan.untag, *earlier}
        still = [t for t in plan.tags if t not in gone and familiar(t) not in gone]
        left = f"; still tagged {', '.join(f'`{familiar(t)}`' for t in still)}" if still else ""
        kept = "; the image stays for the containers that use it" if plan.containers and not still else ""
        untag = ", ".join(f"`{t}`" for t in plan.untag)
        lines = [f":label: {name} — untag {untag} only{left}{kept}. Frees nothing."]
    if plan.containers:
        lines.append(f"      used by {', '.join(plan.containers)}")
    return "\n".join(lines)


def card(pending: PendingAction, plans: list[Planned], problems: list[str]) -> Message:
    total = pending.payload.get("frees", sum(p.frees for p in plans if p.deletes))
    title = f"Remove {len(plans)} image{'s' if len(plans) != 1 else ''} from {pending.host}?"
    untagged: dict[str, set[str]] = {}
    lines = []
    for p in plans:
        lines.append(_plan_text(p, untagged.get(p.image_id, set())))
        untagged.setdefault(p.image_id, set()).update(p.untag)
    body = "\n".join(lines)
    flags = " ".join(
        f
        for f, on in (("--force", pending.payload["force"]), ("--no-prune", pending.payload["noprune"]))
        if on
    )
    blocks = [header(title), *sections(body)]
    if problems:
        blocks.append(section("Left out:\n" + "\n".join(f"• {p}" for p in problems)[:2900]))
    blocks.append(
        context(
            f"Frees {'at most' if pending.payload.get('frees_at_most') else 'about'} {human_size(total, 4)}"
            f"{' · ' + flags if flags else ''}"
            f" · asked by {mention(pending.user)} · only they or an admin can confirm"
            f" · expires {confirmations.expires_text(pending)}"
        )
    )
    warning = f"This removes images from {pending.host}. It cannot be undone."
    blocks.append(confirmations.decision_buttons("rmi", pending, title, warning))
    return Message(text=title, blocks=blocks, in_channel=True)


# --------------------------------------------------------------------------------------------- buttons


def on_cancel(req: ActionRequest, reply: Reply) -> None:
    confirmations.cancel(req, reply, "rmi")


def on_confirm(req: ActionRequest, reply: Reply) -> None:
    pending = confirmations.decide(req, reply, "rmi", "running")
    if pending is None:
        return
    host = req.services.hosts.get(pending.host)
    plans = [Planned(**p) for p in pending.payload["plans"]]
    try:
        lines, reclaimed, df_error = execute(
            host.api, plans, pending.payload["force"], pending.payload["noprune"], req, pending
        )
    except Exception as error:
        req.services.store.finish(pending.id, f"failed: {error}")
        raise
    summary = "\n".join(lines)
    req.services.store.finish(pending.id, summary)
    title = f"Removed on {pending.host} (confirmed by {mention(req.user)})"
    reply.update(
        req.message,
        Message(
            text=title,
            blocks=[
                section(f"*{title}*"),
                *code_blocks(summary),
                context(
                    f"Total reclaimed space: {human_size(reclaimed, 4)}"
                    if reclaimed is not None
                    else f"Total reclaimed space: unknown (no disk usage from the engine: {df_error})"
                ),
            ],
            in_channel=True,
        ),
    )


def execute(
    api: docker.APIClient,
    plans: list[Planned],
    force: bool,
    noprune: bool,
    req: ActionRequest,
    pending: PendingAction,
) -> tuple[list[str], int | None, str]:
    """Remove image by image; one failure never stops the others. Returns the lines, the bytes
    reclaimed (the df difference; None when df failed) and df's error. A df failure never stops a
    removal: the lines still say what was removed."""
    store = req.services.store
    before, df_error = _df_total(api)
    index = ImageIndex(list_images(api, all=True))
    lines: list[str] = []
    for plan in plans:
        target, skip = _recheck(plan, index)
        outcome = [skip] if skip else _remove(api, target, force, noprune)
        lines.extend(outcome)
        store.audit(
            user=req.user,
            channel=req.channel,
            host=pending.host,
            action="rmi.remove",
            image_id=plan.image_id,
            tags=plan.untag,
            result="; ".join(outcome),
            request_id=req.request_id,
        )
    after, df_error = _df_total(api) if before is not None else (None, df_error)
    if before is None or after is None:
        return lines, None, df_error
    metrics.RECLAIMED_BYTES.inc(max(before - after, 0))
    return lines, max(before - after, 0), df_error


def _df_total(api: docker.APIClient) -> tuple[int | None, str]:
    try:
        return images_usage(api).total, ""
    except (
        docker.errors.DockerException,
        *connection_errors(),
    ) as error:  # the removal matters, not the figure
        explanation = getattr(error, "explanation", None)
        return None, str(explanation or error)


def _recheck(plan: Planned, index: ImageIndex) -> tuple[str, str]:
    """What to remove now, or why not: a tag that moved, or new tags, are never touched."""
    _, drift = recheck(Seen(plan.image_id, plan.tags, plan.by_tag), index)
    if drift is None:
        if plan.by_tag:
            return (plan.by_tag if "@" not in plan.ref else plan.ref), ""
        return plan.image_id, ""
    subject = plan.by_tag or short_id(plan.image_id)
    if drift.category == "gone":
        return "", _no_such_image(plan.ref)
    if drift.category == "moved":
        return "", f"{subject}: {drift.reason} as the card showed; not touched."
    return "", f"{subject}: {drift.reason} since the card; not removed."


def _no_such_image(ref: str) -> str:
    """The CLI's words for a ref that is gone: the engine names it as parsed (an ID prefix is a name
    to it, so `1a2b3c` reads `1a2b3c:latest`)."""
    try:
        parsed = parse_reference(ref)
        name = parsed.familiar() if parsed.digest else parsed.with_default_tag().familiar()
    except InvalidReference:
        name = ref
    return f"Error response from daemon: No such image: {name}"


def _remove(api: docker.APIClient, target: str, force: bool, noprune: bool) -> list[str]:
    removal = remove(api, target, force=force, noprune=noprune)
    if removal.error is not None:  # NotFound too: the engine's own words, as the CLI prints them
        return [explain(removal.error) + _in_words(str(removal.error.explanation))]
    return removal.lines


def _in_words(explanation: str) -> str:
    for marker, words in (
        ("being used by running container", " (in use by a running container: stop and remove it first)"),
        ("being used by stopped container", " (in use by a stopped container: use --force, or remove it)"),
        ("referenced in multiple repositories", " (several tags: use --force, or remove them one by one)"),
        ("dependent child images", " (other images are built on it: remove those first)"),
        ("is using its referenced image", " (a container uses it: use --force to untag anyway)"),
    ):
        if marker in explanation:
            return words
    return ""


COMMAND = Command(
    name="rmi",
    summary="Remove images, after you confirm (shows what is freed and what stays).",
    example="/docker rmi redis:6",
    run=run,
    add_arguments=add_arguments,
    actions={"rmi.confirm": on_confirm, "rmi.cancel": on_cancel},
    role="admin",
)
