"""What every handler may use besides its request: settings, hosts, the command list."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.core import config_file
from bot.core.access import Access
from bot.core.settings import Settings
from bot.engine.hosts import HostPool
from bot.engine.pulling import PullRegistry, PullSlots
from bot.state.listings import ListingStore
from bot.state.live_messages import LiveMessages
from bot.state.store import Store, database_url

if TYPE_CHECKING:
    from bot.core.commands import Command
    from bot.engine.ledger import Ledger
    from bot.jobs.leadership import Leadership
    from bot.jobs.scheduler import Scheduler


@dataclass
class Services:
    settings: Settings
    hosts: HostPool
    commands: list[Command]
    store: Store
    access: Access
    policies: dict[str, str] = field(default_factory=dict)  # named cleanup policies from the config
    pulls: PullRegistry = field(default_factory=PullRegistry)  # the pulls running in this process
    pull_slots: PullSlots = field(default_factory=PullSlots)  # pull requests waiting, per user and host
    listings: ListingStore[Any] = field(default_factory=ListingStore)  # `images` pages for More
    # Set by the process that runs them (serve/shell); None in a bare Services (some tests).
    scheduler: Scheduler | None = None
    ledger: Ledger | None = None  # when each image was last used
    leadership: Leadership | None = None  # several replicas on PostgreSQL: which one runs the scheduler
    live_messages: LiveMessages | None = None  # ... and the messages this one updates as pulls go

    def command(self, name: str) -> Command | None:
        for cmd in self.commands:
            if name == cmd.name or name in cmd.aliases:
                return cmd
        return None

    def stop_background(self, wait: bool = True) -> None:
        """Hand the scheduler lease on (if held), stop the scheduler and the ledger's watchers."""
        if self.leadership is not None:
            self.leadership.stop()
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=wait)
        if self.ledger is not None:
            self.ledger.stop()

    def close(self) -> None:
        self.hosts.close()
        self.store.close()


def build_services(settings: Settings, commands: list[Command]) -> Services:
    """Everything from settings and the YAML config; a bad config raises config_file.ConfigError.
    The caller brings the command list (handlers.COMMANDS): the core never imports the handlers."""
    raw = config_file.load(settings.config)
    hosts = HostPool(config_file.hosts(raw, settings))
    access = Access(config_file.access_policy(raw, settings))
    store = Store(database_url(settings.data_dir, settings.database_url), audit_file=settings.audit_file)
    return Services(
        settings=settings,
        hosts=hosts,
        commands=commands,
        store=store,
        access=access,
        policies=config_file.policies(raw),
    )
