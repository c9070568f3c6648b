"""The subcommands of /docker. A new subcommand is one module and one line below."""

from __future__ import annotations

from bot.core.commands import Command
from handlers import audit, cleanup, hosts, images, inspect, outdated, pull, report, rmi, search, tags
from handlers import help as help_command

COMMANDS: list[Command] = [
    help_command.COMMAND,
    search.COMMAND,
    tags.COMMAND,
    pull.COMMAND,
    images.COMMAND,
    inspect.COMMAND,
    rmi.COMMAND,
    cleanup.COMMAND,
    report.COMMAND,
    outdated.COMMAND,
    hosts.COMMAND,
    audit.COMMAND,
]
