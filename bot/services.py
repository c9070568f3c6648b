"""What every handler may use besides its request: settings, hosts, the command list."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.config import Settings
from bot.hosts import DockerHost, HostPool
from bot.store import Store, database_url

if TYPE_CHECKING:
    from bot.commands import Command


@dataclass
class Services:
    settings: Settings
    hosts: HostPool
    commands: list[Command]
    store: Store
    # Set by the process that runs them (serve/shell); None in a bare Services (some tests).
    scheduler: Any = None  # bot.scheduler.Scheduler
    ledger: Any = None  # bot.ledger.Ledger: when each image was last used

    def command(self, name: str) -> Command | None:
        for cmd in self.commands:
            if name == cmd.name or name in cmd.aliases:
                return cmd
        return None

    def close(self) -> None:
        self.hosts.close()
        self.store.close()


def build_services(settings: Settings, commands: list[Command] | None = None) -> Services:
    if commands is None:
        from handlers import COMMANDS

        commands = COMMANDS
    hosts = HostPool(
        [DockerHost(name="local", timeout=settings.docker_timeout, max_pool_size=settings.workers)]
    )
    store = Store(database_url(settings.data_dir, settings.database_url), audit_file=settings.audit_file)
    return Services(settings=settings, hosts=hosts, commands=commands, store=store)
