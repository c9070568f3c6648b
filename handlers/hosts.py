"""/docker hosts: every configured engine, asked in parallel: version, image store, images, disk, latency."""

from __future__ import annotations

from bot.core.commands import ArgParser, Command, Reply, Request
from bot.engine.hostinfo import hosts_table
from bot.render.messages import Message, code_blocks, context, header


def add_arguments(parser: ArgParser) -> None:
    pass


def run(req: Request, reply: Reply) -> None:
    table, up, total = hosts_table(req.services.hosts, req.services.settings.host_timeout)
    blocks = [header(f"{total} Docker hosts, {up} up"), *code_blocks(table)]
    blocks.append(context("`--host NAME` (or `@NAME` first) picks a host; `--host all` works for reads."))
    reply.send(Message(text=f"{total} hosts, {up} up", blocks=blocks))


COMMAND = Command(
    name="hosts",
    summary="The Docker hosts this bot manages: engine, image store, images, disk, reachability.",
    example="/docker hosts",
    run=run,
    add_arguments=add_arguments,
)
