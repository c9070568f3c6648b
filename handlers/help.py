"""/docker help [COMMAND]: what the bot can do, and how to ask for it."""

from __future__ import annotations

from bot.core.access import rank
from bot.core.commands import ArgParser, Command, Reply, Request, UserError
from bot.render.messages import Message, code_blocks, context, header, section


def add_arguments(parser: ArgParser) -> None:
    parser.add_argument("command", nargs="?", help="a command to explain")


def run(req: Request, reply: Reply) -> None:
    # Each person sees what they may run on this host (StackStorm's help ignoring RBAC, st2#2414, confused).
    commands = [c for c in req.services.commands if rank(req.role) >= rank(c.role)]
    if req.args.command:
        cmd = req.services.command(req.args.command.lower())
        if cmd is None:
            raise UserError(f"There is no `{req.args.command}` command. `/docker help` lists them all.")
        reply.send(command_help(cmd))
        return
    lines = [f"*`/docker {c.name}`* — {c.summary}\n      e.g. `{c.example}`" for c in commands]
    reply.send(
        Message(
            text="dockerbot commands: " + ", ".join(c.name for c in commands),
            blocks=[
                header("dockerbot — Docker images from Slack"),
                section("\n".join(lines)),
                context(
                    f"Host: `{req.host.name}` · your role: {req.role or 'none'} · "
                    "`/docker help COMMAND` shows a command's options."
                ),
            ],
        )
    )


def command_help(cmd: Command) -> Message:
    # argparse's help minus its (wrapped) usage line, which we show whole above it.
    options = cmd.parser().format_help().partition("\n\n")[2].rstrip()
    aliases = f" (also `{'`, `'.join(cmd.aliases)}`)" if cmd.aliases else ""
    blocks = [section(f"*`/docker {cmd.name}`*{aliases} — {cmd.summary}\n*Usage:* `{cmd.usage}`")]
    if options:
        blocks += code_blocks(options)
    blocks.append(context(f"Example: `{cmd.example}`"))
    return Message(text=f"/docker {cmd.name}: {cmd.summary}", blocks=blocks)


COMMAND = Command(
    name="help",
    summary="List the commands, or explain one.",
    example="/docker help pull",
    run=run,
    add_arguments=add_arguments,
)
