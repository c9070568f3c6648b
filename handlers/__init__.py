"""The subcommands of /docker. A new subcommand is one module and one line below."""

from __future__ import annotations

from bot.commands import Command
from handlers import help as help_command
from handlers.coming_soon import coming_soon

COMMANDS: list[Command] = [
    help_command.COMMAND,
    coming_soon("search", "Search Docker Hub for images.", "/docker search redis --filter is-official=true"),
    coming_soon("pull", "Pull an image, with live per-layer progress.", "/docker pull redis:7"),
    coming_soon("images", "List images, like `docker images`.", "/docker images redis", ("ls",)),
    coming_soon("inspect", "Show an image's details (any unique ID prefix).", "/docker inspect 3f5"),
    coming_soon("rmi", "Remove images, after you confirm.", "/docker rmi redis:6"),
    coming_soon("cleanup", "Preview, run or schedule image cleanup.", "/docker cleanup preview"),
    coming_soon("report", "Disk-usage report, now or on a schedule.", "/docker report now"),
]
