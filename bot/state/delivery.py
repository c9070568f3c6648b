"""Posting scheduled results to a channel, never losing one.

The Slack client already retries 429 (after Retry-After) and 5xx with backoff. A message
that still could not be posted is kept in the database and posted, in order, before the
next message to the same channel.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

from sqlalchemy import (
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine

from bot.render.messages import Message
from bot.state.tables import outbox_table

log = logging.getLogger("dockerbot.delivery")


class Poster(Protocol):
    def post(self, channel: str, message: Message) -> None:
        """Post or raise."""


class Delivery:
    def __init__(self, engine: Engine, poster: Poster) -> None:
        self.engine = engine
        self.poster = poster
        self._lock = threading.Lock()  # one delivery at a time keeps each channel in order

    def deliver(self, channel: str, message: Message) -> bool:
        """True when this message (and every earlier one kept for the channel) was posted."""
        with self._lock:
            if not self._flush(channel):
                self._keep(channel, message)
                return False
            try:
                self.poster.post(channel, message)
                return True
            except Exception as error:  # noqa: BLE001 - keep it for the next delivery instead
                log.warning("could not post to %s, keeping it for later: %s", channel, error)
                self._keep(channel, message)
                return False

    def pending(self, channel: str | None = None) -> int:
        query = select(outbox_table.c.id)
        if channel:
            query = query.where(outbox_table.c.channel == channel)
        with self.engine.connect() as conn:
            return len(conn.execute(query).all())

    def _keep(self, channel: str, message: Message) -> None:
        note = "" if not message.files else " (attached files could not be kept)"
        with self.engine.begin() as conn:
            conn.execute(
                insert(outbox_table).values(
                    channel=channel,
                    text=message.text + note,
                    blocks=message.blocks,
                    in_channel=message.in_channel,
                    created_at=time.time(),
                    attempts=1,
                )
            )

    def _flush(self, channel: str) -> bool:
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    select(outbox_table).where(outbox_table.c.channel == channel).order_by(outbox_table.c.id)
                )
                .mappings()
                .all()
            )
        for row in rows:
            kept = Message(text=row["text"], blocks=row["blocks"], in_channel=row["in_channel"])
            try:
                self.poster.post(channel, kept)
            except Exception as error:  # noqa: BLE001
                log.warning("still cannot post to %s: %s", channel, error)
                with self.engine.begin() as conn:
                    conn.execute(
                        update(outbox_table)
                        .where(outbox_table.c.id == row["id"])
                        .values(attempts=outbox_table.c.attempts + 1)
                    )
                return False
            with self.engine.begin() as conn:
                conn.execute(delete(outbox_table).where(outbox_table.c.id == row["id"]))
        return True
