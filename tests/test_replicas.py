"""Several replicas on one PostgreSQL: migrations under a lock, one scheduler lease, deliveries
taken once across processes."""

from __future__ import annotations

import multiprocessing
import secrets
import traceback
from typing import Any

from sqlalchemy import create_engine, inspect, text

REPLICAS = 6  # without the lock, 5 of them fail every time (pg_type_typname_nsp_index)


def fresh_database(server_url: str) -> str:
    name = "r_" + secrets.token_hex(6)
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return server_url.rsplit("/", 1)[0] + "/" + name


def _start_replica(url: str, barrier: Any, results: Any) -> None:
    """(In a child process.) What a replica does to its database at start, released with the others."""
    try:
        from bot.jobs.scheduler import make_job_store
        from bot.state.store import Store, make_engine

        warm = make_engine(url)
        with warm.connect():  # connected before the barrier: all start creating tables at once
            barrier.wait(30)
            store = Store(url)
        make_job_store(store.engine)
        store.close()
        results.put("ok")
    except Exception:  # noqa: BLE001 - the parent asserts on what each replica said
        results.put(traceback.format_exc())


def test_replicas_started_at_once_on_an_empty_database_all_come_up(postgres_server: str) -> None:
    url = fresh_database(postgres_server)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(REPLICAS)
    results = context.Queue()
    processes = [
        context.Process(target=_start_replica, args=(url, barrier, results)) for _ in range(REPLICAS)
    ]
    for process in processes:
        process.start()
    said = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(30)
    failures = [s for s in said if s != "ok"]
    assert not failures, f"{len(failures)} of {REPLICAS} replicas failed to start:\n" + failures[0]
    engine = create_engine(url)
    tables = set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        versions = conn.execute(text("SELECT version FROM schema_version ORDER BY version")).scalars().all()
    engine.dispose()
    assert {"pending_actions", "schedule_runs", "leases", "delivered", "apscheduler_jobs"} <= tables
    from bot.state.schema import MIGRATIONS

    assert versions == [v for v, _, _ in MIGRATIONS], "each step applied once"
