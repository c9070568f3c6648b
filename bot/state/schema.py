"""The database schema, created and migrated at start: an explicit, numbered list of steps.

Every table is defined in bot.state.tables; `migrate` applies each step newer than the version
recorded in `schema_version`, in one transaction per step. A new column or table is a new step at
the end of MIGRATIONS — never an edit of an old one.

Several replicas may start at the same moment on one empty database: PostgreSQL refuses two
concurrent CREATE TABLEs of one name (a unique violation in its catalog, not "already exists"), so
every creation runs under `schema_lock`, one process at a time.
"""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Callable, Iterator

from sqlalchemy import Column, Float, Integer, String, Table, insert, select, text
from sqlalchemy.engine import Connection, Engine

from bot.state.tables import delivered, leases, live_messages, metadata, outdated_posts

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


def _replicas(conn: Connection) -> None:
    for table in (leases, delivered):
        table.create(conn, checkfirst=True)


def _live_messages(conn: Connection) -> None:
    live_messages.create(conn, checkfirst=True)


MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "pending actions, audit log, schedules and runs, outbox, last-use ledger", _initial),
    (2, "what each outdated schedule posted last", _outdated_posts),
    (3, "the scheduler lease and the deliveries run, for several replicas", _replicas),
    (4, "live messages by the replica that updates them", _live_messages),
]

# pg_advisory_lock's key for creating and migrating tables: any constant no other program on the
# database uses ("dockerbot" in ASCII).
SCHEMA_LOCK_KEY = 0x646F636B6572626F


@contextlib.contextmanager
def schema_lock(engine: Engine) -> Iterator[None]:
    """Creating or migrating tables, one process at a time: a PostgreSQL advisory lock (released
    with its session, should this process die), a file lock beside a SQLite database."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": SCHEMA_LOCK_KEY})
                conn.commit()
        return
    path = engine.url.database if engine.dialect.name == "sqlite" else None
    if not path or path == ":memory:":
        yield
        return
    with open(f"{path}.lock", "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        yield


def migrate(engine: Engine) -> int:
    """Bring the database to the latest version; returns it. Safe to run at every start, by
    several processes at once."""
    with schema_lock(engine):
        return _migrate(engine)


def _migrate(engine: Engine) -> int:
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
