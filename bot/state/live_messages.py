"""Messages a replica updates as a job goes (a pull's progress), so that another replica can tell
their readers when the one updating them died.

Each replica keeps a presence lease (`replica:<its holder id>` in the leases table) renewed with
the scheduler lease's rhythm; a message whose owner's presence expired is an orphan. Whoever
deletes an orphan's row (one DELETE, rowcount 1) marks it, so it is marked once.
"""

from __future__ import annotations

import time

from sqlalchemy import and_, delete, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement

from bot.state.lease import Lease, database_now
from bot.state.tables import leases, live_messages

PRESENCE = "replica:"


def presence(engine: Engine, holder: str, seconds: float) -> Lease:
    """This replica's presence: alive while it renews this."""
    return Lease(engine, PRESENCE + holder, holder, seconds)


def _message(channel: str, ts: str) -> ColumnElement[bool]:
    return and_(live_messages.c.channel == channel, live_messages.c.ts == ts)


class LiveMessages:
    def __init__(self, engine: Engine, owner: str) -> None:
        self.engine = engine
        self.owner = owner

    def add(self, channel: str, ts: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(live_messages).values(channel=channel, ts=ts, owner=self.owner, posted_at=time.time())
            )

    def remove(self, channel: str, ts: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                delete(live_messages)
                .where(live_messages.c.channel == channel)
                .where(live_messages.c.ts == ts)
            )

    def claim_orphans(self) -> list[tuple[str, str]]:
        """The messages whose owner is gone (no live presence), each claimed by this caller alone."""
        alive = (
            select(leases.c.holder)
            .where(leases.c.name.startswith(PRESENCE))
            .where(leases.c.expires_at >= database_now(self.engine))
        )
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(live_messages.c.channel, live_messages.c.ts).where(live_messages.c.owner.not_in(alive))
            ).all()
        claimed = []
        for channel, ts in rows:
            with self.engine.begin() as conn:
                gone = conn.execute(
                    delete(live_messages).where(
                        and_(live_messages.c.channel == channel, live_messages.c.ts == ts)
                    )
                ).rowcount
            if gone == 1:
                claimed.append((channel, ts))
        return claimed
