"""/docker tags IMAGE [--limit N]: a Docker Hub repository's most recently pushed tags."""

from __future__ import annotations

from bot.core.commands import ArgParser, Command, Reply, Request, UserError
from bot.engine import hub
from bot.engine.reference import DEFAULT_DOMAIN, parse_reference
from bot.render.formatting import created_since, format_table, human_size
from bot.render.messages import Message, code_blocks, context
from handlers.search import pull_buttons

DEFAULT_LIMIT = 10  # Hub's own default page size
MAX_LIMIT = 100  # Hub's largest page


def add_arguments(parser: ArgParser) -> None:
    parser.add_argument("image", help="a Docker Hub repository, e.g. redis or bitnami/redis")
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="max tags, 1-100 (default 10)")


def hub_repository(text: str) -> str:
    """The familiar Hub name ("redis", "bitnami/redis") for what the user typed."""
    ref = parse_reference(text)  # the CLI's own error texts for malformed names
    if ref.domain != DEFAULT_DOMAIN:
        raise UserError(f"`{ref.domain}` is not Docker Hub; only Docker Hub repositories can list tags here.")
    if ref.tag or ref.digest:
        raise UserError(
            f"Give a repository without a tag or digest, e.g. `/docker tags {ref.familiar_name}`."
        )
    if ref.path.count("/") != 1:
        raise UserError(f"`{text}` is not a Docker Hub repository: Hub names are NAME or NAMESPACE/NAME.")
    return ref.familiar_name


def tags_message(repository: str, tags: list[hub.TagInfo], limit: int) -> Message:
    if not tags:
        text = f"Docker Hub lists no tags for `{repository}`."
        return Message(text=text, blocks=[context(text)])
    rows = [
        [t.name, human_size(t.size), created_since(t.last_pushed), ", ".join(t.platforms) or "-"]
        for t in tags
    ]
    table = format_table(["TAG", "COMPRESSED SIZE", "LAST PUSHED", "ARCHITECTURES"], rows)
    shown = (
        f"{len(tags)} most recently pushed tag{'s' if len(tags) != 1 else ''} of `{repository}` on Docker Hub"
    )
    more = f" · `--limit` shows up to {MAX_LIMIT}" if len(tags) == limit < MAX_LIMIT else ""
    note = f"{shown}{more} · sizes are compressed, as pulled"
    return Message(
        text=f"Docker Hub: {len(tags)} tags of {repository}",
        blocks=[
            *code_blocks(table),
            *pull_buttons([f"{repository}:{t.name}" for t in tags]),
            context(note),
        ],
    )


def run(req: Request, reply: Reply) -> None:
    repository = hub_repository(req.args.image)
    limit = req.args.limit
    if not 1 <= limit <= MAX_LIMIT:
        raise UserError(f"limit {limit} is outside the range of [1, {MAX_LIMIT}]")
    settings = req.services.settings
    client = hub.client_for(settings.hub_url, getattr(settings, "hub_timeout", hub.DEFAULT_TIMEOUT))
    reply.send(tags_message(repository, client.tags(repository, limit), limit))


COMMAND = Command(
    name="tags",
    summary="List a Docker Hub repository's tags (size, last pushed, architectures).",
    example="/docker tags redis --limit 5",
    run=run,
    add_arguments=add_arguments,
)
