"""Commands announced in help whose handlers have not shipped yet."""

from __future__ import annotations

from bot.commands import ArgParser, Command, Reply, Request
from bot.messages import plain


def _accept_anything(parser: ArgParser) -> None:
    parser.add_argument("words", nargs="*")


def coming_soon(name: str, summary: str, example: str, aliases: tuple[str, ...] = ()) -> Command:
    def run(req: Request, reply: Reply) -> None:
        reply.send(plain(f"`/docker {name}` is not available yet. `/docker help` lists what works today."))

    return Command(
        name=name, summary=summary, example=example, run=run, add_arguments=_accept_anything, aliases=aliases
    )
