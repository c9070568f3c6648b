"""/docker search TERM [--limit N] [--filter KEY=VALUE]... : Docker Hub search, like `docker search`.

Input is checked as the engine checks it (same order, same error texts) before
anything is sent to Hub. Unlike the engine, filters apply before the limit is cut.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.core.commands import ArgParser, Command, Reply, Request, UserError
from bot.engine import hub
from bot.render.formatting import ellipsis, format_table, human_count
from bot.render.messages import Block, Message, actions, button, code_blocks, context, section

DEFAULT_LIMIT = 25  # the engine's defaultSearchLimit
MAX_LIMIT = 100
DESCRIPTION_WIDTH = 45  # the CLI's Ellipsis(desc, 45)
BUTTONS_PER_BLOCK = 25  # Slack's cap on elements in one actions block
_ACCEPTED_FILTERS = ("is-automated", "is-official", "stars")  # the daemon's acceptedSearchFilterTags
_ATOI = re.compile(r"^[+-]?[0-9]+$")  # what Go's strconv.Atoi accepts (Python's int() takes more)


@dataclass(frozen=True)
class SearchQuery:
    term: str
    limit: int
    is_official: bool | None
    min_stars: int | None
    automated_only: bool  # `is-automated=true` finds nothing since Hub dropped automated builds


def add_arguments(parser: ArgParser) -> None:
    parser.add_argument("term", help="what to look for on Docker Hub")
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="max results, 1-100 (default 25)")
    parser.add_argument(
        "-f",
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="is-official=true|false, stars=N (at least N stars)",
    )
    parser.add_argument("--no-trunc", action="store_true", help="do not cut descriptions")


# --- validation, in the daemon's order: filters, limit, term -----------------------------------
def parse_filters(raw: list[str]) -> dict[str, list[str]]:
    """The CLI's FilterOpt: `name=value`, name lower-cased, both trimmed."""
    found: dict[str, list[str]] = {}
    for item in raw:
        if not item:
            continue
        if "=" not in item:
            raise UserError("bad format of filter (expected name=value)")
        name, _, value = item.partition("=")
        found.setdefault(name.strip().lower(), []).append(value.strip())
    return found


def _go_bool(name: str, values: list[str]) -> bool | None:
    """moby filters.GetBoolOrDefault: exactly one of true/1 or false/0, else an invalid filter."""
    if not values:
        return None
    is_true = any(v in ("true", "1") for v in values)
    is_false = any(v in ("false", "0") for v in values)
    if is_true == is_false:
        raise UserError(f"invalid filter '{name}=[{' '.join(values)}]'")
    return is_true


def build_query(term: str, limit: int, raw_filters: list[str]) -> SearchQuery:
    filters = parse_filters(raw_filters)
    for name in filters:
        if name not in _ACCEPTED_FILTERS:
            raise UserError(f"invalid filter '{name}'")
    automated = _go_bool("is-automated", filters.get("is-automated", []))
    official = _go_bool("is-official", filters.get("is-official", []))
    min_stars = 0
    for value in filters.get("stars", []):
        if not _ATOI.match(value):
            raise UserError(f"invalid filter 'stars={value}'")
        min_stars = max(min_stars, int(value))
    if not 1 <= limit <= MAX_LIMIT:
        raise UserError(f"limit {limit} is outside the range of [1, {MAX_LIMIT}]")
    return SearchQuery(
        term=hub_term(term),
        limit=limit,
        is_official=official,
        min_stars=min_stars or None,
        automated_only=bool(automated),
    )


def hub_term(term: str) -> str:
    """The term as Hub should see it, or a clear refusal; nothing invalid is ever sent."""
    if "://" in term:
        raise UserError(f"invalid repository name: repository name ({term}) should not have a scheme")
    text = " ".join(term.split())
    first, sep, rest = text.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        if first not in ("docker.io", "index.docker.io"):
            raise UserError(f"Only Docker Hub can be searched here; `{first}` is another registry.")
        text = rest
    text = text.removeprefix("library/")  # the engine strips it for the official index too
    if not text or not any(c.isalnum() for c in text):
        raise UserError("Give a word to search for, e.g. `/docker search redis`.")
    if any(not c.isprintable() for c in text):
        raise UserError("The search term contains control characters.")
    if len(text) > 255:
        raise UserError(f"The search term is {len(text)} characters long; the limit is 255.")
    return text


# --- the reply -----------------------------------------------------------------------------------
def results_table(results: list[hub.SearchResult], *, truncate: bool = True) -> str:
    rows = []
    for r in results:
        description = r.description.replace("\n", " ").replace("\r", " ")
        if truncate:
            description = ellipsis(description, DESCRIPTION_WIDTH)
        rows.append([r.name, description, str(r.stars), "[OK]" if r.official else "", human_count(r.pulls)])
    return format_table(["NAME", "DESCRIPTION", "STARS", "OFFICIAL", "PULLS"], rows)


def pull_buttons(names: list[str]) -> list[Block]:
    """One Pull button per result, 25 to an actions block (100 results: 4 blocks)."""
    buttons = [button(f"Pull {name}", "pull.start", value=name, key=str(i)) for i, name in enumerate(names)]
    return [
        actions(*buttons[i : i + BUTTONS_PER_BLOCK], block_id=f"search.pull.{i // BUTTONS_PER_BLOCK}")
        for i in range(0, len(buttons), BUTTONS_PER_BLOCK)
    ]


def describe_filters(query: SearchQuery) -> str:
    parts = []
    if query.is_official is not None:
        parts.append("official images only" if query.is_official else "no official images")
    if query.min_stars:
        parts.append(f"at least {query.min_stars:,} stars")
    return ", ".join(parts)


def search_message(query: SearchQuery, results: list[hub.SearchResult], *, truncate: bool = True) -> Message:
    term = query.term.replace("`", "'")  # a backtick would end the inline code
    where = f"`{term}` on Docker Hub"
    filters = describe_filters(query)
    if not results:
        text = f"No results for {where}" + (f" ({filters})." if filters else ".")
        return Message(text=text, blocks=[section(text)])
    count = f"{len(results)} result{'s' if len(results) != 1 else ''}"
    note = f"{count} for {where}" + (f" · {filters}" if filters else "")
    if len(results) == query.limit < MAX_LIMIT:
        note += f" · the first {query.limit}; `--limit` shows up to {MAX_LIMIT}"
    table = results_table(results, truncate=truncate)
    return Message(
        text=f"Docker Hub: {count} for {term}",
        blocks=[*code_blocks(table), *pull_buttons([r.name for r in results]), context(note)],
    )


def run(req: Request, reply: Reply) -> None:
    query = build_query(req.args.term, req.args.limit, req.args.filter)
    results: list[hub.SearchResult] = []
    if query.automated_only:
        # The engine answers an empty list without asking the registry.
        reply.send(search_message(query, results))
        return
    settings = req.services.settings
    client = hub.client_for(settings.hub_url, getattr(settings, "hub_timeout", hub.DEFAULT_TIMEOUT))
    results = client.search(
        query.term, limit=query.limit, is_official=query.is_official, min_stars=query.min_stars
    )
    reply.send(search_message(query, results, truncate=not req.args.no_trunc))


COMMAND = Command(
    name="search",
    summary="Search Docker Hub for images.",
    example="/docker search redis --filter is-official=true",
    run=run,
    add_arguments=add_arguments,
)
