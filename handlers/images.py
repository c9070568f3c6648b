"""/docker images: the docker CLI's classic table, paged to fit Slack, the whole table as a file.

A page is one code section (header line + as many rows as fit in 3,000 chars). When there are
more, a **More** button carries only a random token: the rows stay here, in a small in-memory
LRU, so a press never re-runs a command (Botkube's issue #907: a button that re-ran its command).
The whole table follows the first page as a file, in a message of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.core.commands import ActionRequest, ArgParser, Command, Reply, Request, UsageError
from bot.core.confirmations import may_press
from bot.engine.images import (
    SORT_KEYS,
    image_rows,
    images_in_use,
    list_images,
    shown,
    sort_rows,
    summary_line,
    table_lines,
)
from bot.render.messages import MAX_SECTION_TEXT, File, Message, actions, button, context, plain, section
from bot.render.mrkdwn import code, slack_len

MORE_ACTION = "images.more"
PAGE_BUDGET = MAX_SECTION_TEXT - len("``````")  # one code section per page
UNUSED_NOTE = "Unused = no container, running or stopped, was created from the image."


@dataclass(frozen=True)
class Listing:
    """A computed table: what every page of one `/docker images` shows."""

    host: str
    header: str
    rows: list[str]
    pages: list[tuple[int, int]]  # [start, end) row ranges
    summary: str

    @property
    def text(self) -> str:
        return "\n".join([self.header, *self.rows, "", self.summary]) + "\n"


def paginate(header: str, rows: list[str], budget: int = PAGE_BUDGET) -> list[tuple[int, int]]:
    """Greedy pages: each holds the header line and as many whole rows as fit in `budget` chars
    (as Slack counts them: escaped)."""
    pages: list[tuple[int, int]] = []
    start, size = 0, slack_len(header)
    for i, row in enumerate(rows):
        if i > start and size + 1 + slack_len(row) > budget:
            pages.append((start, i))
            start, size = i, slack_len(header)
        size += 1 + slack_len(row)
    pages.append((start, len(rows)))
    return pages


def page_message(listing: Listing, token: str, page: int) -> Message:
    start, end = listing.pages[page]
    count = len(listing.pages)
    table = "\n".join([listing.header, *listing.rows[start:end]])
    note = listing.summary
    if count > 1:
        note += f" · rows {start + 1}–{end} of {len(listing.rows)} · page {page + 1} of {count}"
    blocks = [section(code(table)), context(note)]
    if page + 1 < count:
        blocks.append(actions(button("More", MORE_ACTION, value=f"{token}:{page + 1}")))
    return Message(text=f"docker images on {listing.host}: {note}", blocks=blocks)


def table_file(listing: Listing) -> Message:
    """The whole table as a file, in a message of its own: sent after the first page, so that page
    does not wait for an upload of the whole table (10,000 rows are ~700 kB)."""
    rows = len(listing.rows)
    title = f"docker images on {listing.host} ({rows} rows)"
    file = File(name="images.txt", content=listing.text, title=title)
    text = f"docker images on {listing.host}: {listing.summary} · the whole table ({rows} rows) as a file"
    return Message(text=text, files=[file])


def parse_filters(values: list[str]) -> dict[str, list[str]]:
    """`--filter KEY=VALUE` as the CLI's filters.ParseFlag: key lower-cased, both sides trimmed."""
    filters: dict[str, list[str]] = {}
    for value in values:
        key, eq, val = value.partition("=")
        if not eq:
            raise UsageError(
                f'invalid argument "{shown(value)}" for "-f, --filter" flag: '
                "bad format of filter (expected name=value)"
            )
        filters.setdefault(key.strip().lower(), []).append(val.strip())
    return filters


def add_arguments(parser: ArgParser) -> None:
    parser.epilog = UNUSED_NOTE
    parser.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]", help="only these (globs work)")
    parser.add_argument("-a", "--all", action="store_true", help="show intermediate images too")
    parser.add_argument(
        "-f",
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dangling=true|false, label=K[=V], before=REF, since=REF, reference=GLOB",
    )
    parser.add_argument("--digests", action="store_true", help="add a DIGEST column")
    parser.add_argument("--sort", default="created", choices=SORT_KEYS, help="newest first by default")


def run(req: Request, reply: Reply) -> None:
    args = req.args
    filters = parse_filters(args.filter)
    if args.reference:
        filters.setdefault("reference", []).append(args.reference)  # as the CLI does
    api = req.host.api
    images = list_images(api, all=args.all, filters=filters)
    if not images:
        reply.send(plain(_nothing(args.reference, bool(args.filter), req.host.name)))
        return
    rows = sort_rows(image_rows(images, digests=args.digests), args.sort)
    header, *lines = table_lines(rows, digests=args.digests)
    listing = Listing(
        host=req.host.name,
        header=header,
        rows=lines,
        pages=paginate(header, lines),
        summary=summary_line(images, images_in_use(api)),
    )
    paged = len(listing.pages) > 1
    token = req.services.listings.add(listing) if paged else ""
    reply.send(page_message(listing, token, 0))
    if paged:
        reply.send(table_file(listing))


def _nothing(reference: str | None, filtered: bool, host: str) -> str:
    if reference:
        return f"No images match `{shown(reference)}`" + (" and these filters." if filtered else ".")
    if filtered:
        return "No images match these filters."
    return f"There are no images on `{host}`."


def more(req: ActionRequest, reply: Reply) -> None:
    """The next page replaces the card: one message to scroll, not one per page, and the old
    More button is gone, so a second press cannot post the same page twice."""
    token, _, page_text = req.value.partition(":")
    listing = req.services.listings.get(token)
    page = int(page_text) if page_text.isdigit() else -1
    if listing is None or not 0 <= page < len(listing.pages):
        reply.private(
            plain("This image list has expired (lists are kept 30 minutes). Run `/docker images` again.")
        )
        return
    # A page is a read of the listing's host: the presser needs a role there too, now.
    if may_press(req, reply, "viewer", listing.host, "images.refused"):
        reply.update(req.message, page_message(listing, token, page))


COMMAND = Command(
    name="images",
    summary="List images, like `docker images`; the last line counts unused ones (no container uses them).",
    example="/docker images redis --filter dangling=false --sort size",
    run=run,
    add_arguments=add_arguments,
    aliases=("ls",),
    actions={MORE_ACTION: more},
    fleet=lambda args: True,
)
