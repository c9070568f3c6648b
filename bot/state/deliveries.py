"""Slack deliveries taken, across replicas: a retried or redelivered request runs once, whichever
replica it lands on. Taking a delivery is one INSERT of its keys; a key already there (the unique
primary key) means another delivery of the same request, here or on another replica, was taken."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from bot.state.tables import delivered


class Deliveries:
    def __init__(
        self, engine: Engine, keep: float, clock: Callable[[], float] = time.time, prune_every: float = 60.0
    ) -> None:
        self.engine = engine
        self.keep = keep  # seconds a key is remembered: Slack retries and replays come within it
        self.clock = clock
        self.prune_every = prune_every
        self._pruned = clock()
        self._lock = threading.Lock()

    def take(self, keys: list[str]) -> bool:
        """True if none of `keys` was taken before (and now they are)."""
        if not keys:
            return True
        now = self.clock()
        dialect_insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        stmt = dialect_insert(delivered).values([{"key": k[:255], "at": now} for k in keys])
        stmt = stmt.on_conflict_do_nothing(index_elements=[delivered.c.key]).returning(delivered.c.key)
        with self.engine.begin() as conn:
            new = len(conn.execute(stmt).all())
        self._prune(now)
        return new == len(keys)

    def _prune(self, now: float) -> None:
        with self._lock:
            if now - self._pruned < self.prune_every:
                return
            self._pruned = now
        with self.engine.begin() as conn:
            conn.execute(delete(delivered).where(delivered.c.at < now - self.keep))
