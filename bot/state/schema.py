"""The database schema, created and migrated at start: an explicit, numbered list of steps.

Every table is defined in bot.state.tables; `migrate` applies each step newer than the version
recorded in `schema_version`, in one transaction per step. A new column or table is a new step at
the end of MIGRATIONS — never an edit of an old one.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import Column, Float, Integer, String, Table, insert, select
from sqlalchemy.engine import Connection, Engine

from bot.state.tables import metadata, outdated_posts

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("description", String(200), nullable=False),
    Column("applied_at", Float, nullable=False),
)


def _initial(conn: Connection) -> None:
    metadata.create_all(conn)


def _outdated_posts(conn: Connection) -> None:
    outdated_posts.create(conn, checkfirst=True)  # a fresh database has it from step 1 already


MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "pending actions, audit log, schedules and runs, outbox, last-use ledger", _initial),
    (2, "what each outdated schedule posted last", _outdated_posts),
]


def migrate(engine: Engine) -> int:
    """Bring the database to the latest version; returns it. Safe to run at every start."""
    schema_version.create(engine, checkfirst=True)
    with engine.connect() as conn:
        current = conn.execute(
            select(schema_version.c.version).order_by(schema_version.c.version.desc())
        ).first()
    done = current[0] if current else 0
    for version, description, step in MIGRATIONS:
        if version <= done:
            continue
        with engine.begin() as conn:
            step(conn)
            conn.execute(
                insert(schema_version).values(
                    version=version, description=description, applied_at=time.time()
                )
            )
        done = version
    return done
