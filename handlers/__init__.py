"""The subcommands of /docker. A new subcommand is one module and one line below."""

from __future__ import annotations

from bot.commands import Command
from handlers import audit, hosts, images, inspect, pull, report, rmi, search, tags
from handlers import help as help_command
from handlers.coming_soon import coming_soon

COMMANDS: list[Command] = [
    help_command.COMMAND,
    search.COMMAND,
    tags.COMMAND,
    pull.COMMAND,
    images.COMMAND,
    inspect.COMMAND,
    rmi.COMMAND,
    coming_soon("cleanup", "Preview, run or schedule image cleanup.", "/docker cleanup preview"),
    report.COMMAND,
    hosts.COMMAND,
    audit.COMMAND,
]
