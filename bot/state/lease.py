"""A lease in the database: which of several replicas runs the scheduler and the ledger's watchers.

One row per lease names its holder and when it expires, by the database's clock (the replicas'
clocks may disagree; the database's is the one they share). Taking and renewing are one statement:
it succeeds for the holder, or for anyone once the lease has expired, and for nobody else.
"""

from __future__ import annotations

import time

from sqlalchemy import case, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement

from bot.state.tables import leases


def database_now(engine: Engine) -> ColumnElement[float]:
    """Now, in seconds since the epoch, by the database's clock."""
    if engine.dialect.name == "postgresql":
        return func.extract("epoch", func.clock_timestamp())
    return literal(time.time())  # SQLite: one machine, one clock


class Lease:
    def __init__(self, engine: Engine, name: str, holder: str, seconds: float) -> None:
        self.engine = engine
        self.name = name
        self.holder = holder
        self.seconds = seconds

    def _now(self) -> ColumnElement[float]:
        return database_now(self.engine)

    def acquire(self) -> bool:
        """Take the lease, or renew it if this holder has it; False while another holds it."""
        dialect_insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        now = self._now()
        stmt = dialect_insert(leases).values(
            name=self.name, holder=self.holder, acquired_at=now, expires_at=now + self.seconds
        )
        ours = leases.c.holder == self.holder
        stmt = stmt.on_conflict_do_update(
            index_elements=[leases.c.name],
            set_={
                "holder": self.holder,
                "expires_at": stmt.excluded.expires_at,
                "acquired_at": case((ours, leases.c.acquired_at), else_=stmt.excluded.acquired_at),
            },
            where=ours | (leases.c.expires_at < now),
        ).returning(leases.c.holder)
        with self.engine.begin() as conn:
            return conn.execute(stmt).first() is not None

    def release(self) -> None:
        """Let it go now (a clean shutdown): another replica takes it at its next try."""
        with self.engine.begin() as conn:
            conn.execute(
                update(leases)
                .where(leases.c.name == self.name)
                .where(leases.c.holder == self.holder)
                .values(expires_at=0.0)
            )

    def current_holder(self) -> str | None:
        """Who holds it now (None if nobody does)."""
        with self.engine.connect() as conn:
            return conn.execute(
                select(leases.c.holder)
                .where(leases.c.name == self.name)
                .where(leases.c.expires_at >= self._now())
            ).scalar()
