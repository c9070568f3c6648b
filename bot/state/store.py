"""The bot's database: pending confirmations and the audit log (SQLAlchemy).

A SQLite file under DOCKERBOT_DATA_DIR by default; any SQLAlchemy URL (PostgreSQL for
teams that run it) through DOCKERBOT_DATABASE_URL. Single use of a confirmation is an
atomic UPDATE ... WHERE state='pending', so two presses (or a retried delivery) can
never both win, whichever process or thread they land on.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    create_engine,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine

from bot.state.tables import audit_log, pending_actions


def database_url(data_dir: Path, url: str | None) -> str:
    if url:
        return url
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(data_dir / 'dockerbot.sqlite3').resolve()}"


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(conn: Any, _record: Any) -> None:
            cursor = conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


@dataclass(frozen=True)
class PendingAction:
    id: str
    kind: str
    user: str
    channel: str
    host: str
    payload: dict[str, Any]
    created_at: float
    expires_at: float
    state: str
    decided_by: str | None
    result: str | None


@dataclass(frozen=True)
class Claim:
    """The outcome of trying to decide a pending action."""

    won: bool
    action: PendingAction | None
    reason: str = ""  # why not: "missing", "expired", "done", "cancelled", "running"


def audit_row(
    *,
    user: str,
    channel: str,
    host: str,
    action: str,
    result: str,
    image_id: str | None = None,
    tags: list[str] | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    return {
        "at": time.time(),
        "user": user,
        "channel": channel,
        "host": host,
        "action": action,
        "image_id": image_id,
        "tags": tags or [],
        "result": result,
        "request_id": request_id,
    }


class GroupAudit:
    """Audit entries from many threads, committed in groups (a database's "group commit").

    `add` commits at once unless another thread is committing; then that thread commits this
    entry too, with whatever else arrived meanwhile, before it lets go. So an entry is on disk
    within one commit of being added, like a lone `Store.audit`, at a fraction of the cost per
    entry when a cleanup removes hundreds of images."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pending: list[dict[str, Any]] = []
        self._pending_lock = threading.Lock()
        self._committing = threading.Lock()

    def add(self, row: dict[str, Any]) -> None:
        with self._pending_lock:
            self._pending.append(row)
        self._commit(wait=False)

    def flush(self) -> None:
        """Commit everything added so far (waiting for a commit under way)."""
        self._commit(wait=True)

    def _commit(self, wait: bool) -> None:
        while self._committing.acquire(blocking=wait):
            try:
                with self._pending_lock:
                    rows, self._pending = self._pending, []
                self.store.write_audit(rows)
            finally:
                self._committing.release()
            with self._pending_lock:  # added while we committed, by a thread that did not wait
                if not self._pending:
                    return


class Store:
    def __init__(
        self, url: str, audit_file: Path | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.engine = make_engine(url)
        self.clock = clock  # wall-clock seconds: when confirmations were made and expire
        from bot.state.schema import migrate

        migrate(self.engine)
        self.audit_file = audit_file

    def close(self) -> None:
        self.engine.dispose()

    # --- pending confirmations ---------------------------------------------------------------
    def create_pending(
        self, *, kind: str, user: str, channel: str, host: str, payload: dict[str, Any], ttl: float
    ) -> PendingAction:
        now = self.clock()
        action_id = secrets.token_urlsafe(18)  # opaque and unguessable: the only thing a button carries
        row = {
            "id": action_id,
            "kind": kind,
            "user": user,
            "channel": channel,
            "host": host,
            "payload": payload,
            "created_at": now,
            "expires_at": now + ttl,
            "state": "pending",
        }
        with self.engine.begin() as conn:
            conn.execute(insert(pending_actions).values(**row))
        return PendingAction(decided_by=None, result=None, **row)  # type: ignore[arg-type]

    def get_pending(self, action_id: str) -> PendingAction | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(select(pending_actions).where(pending_actions.c.id == action_id))
                .mappings()
                .first()
            )
        if row is None:
            return None
        return PendingAction(**{k: row[k] for k in PendingAction.__dataclass_fields__})

    def claim(self, action_id: str, *, by: str, new_state: str) -> Claim:
        """Atomically move a pending, unexpired action to `new_state` ("running" or "cancelled")."""
        now = self.clock()
        with self.engine.begin() as conn:
            won = conn.execute(
                update(pending_actions)
                .where(pending_actions.c.id == action_id)
                .where(pending_actions.c.state == "pending")
                .where(pending_actions.c.expires_at > now)
                .values(state=new_state, decided_by=by, decided_at=now)
            ).rowcount
        action = self.get_pending(action_id)
        if won == 1:
            return Claim(True, action)
        if action is None:
            return Claim(False, None, "missing")
        if action.state == "pending":  # still pending but past its expiry
            self._set_state(action_id, "expired", only_if="pending")
            return Claim(False, self.get_pending(action_id), "expired")
        return Claim(False, action, action.state)

    def finish(self, action_id: str, result: str, *, state: str = "done") -> None:
        """Record how a claimed action ended: "done" after it ran, or kept "cancelled"."""
        with self.engine.begin() as conn:
            conn.execute(
                update(pending_actions)
                .where(pending_actions.c.id == action_id)
                .values(state=state, result=result)
            )

    def _set_state(self, action_id: str, state: str, only_if: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(pending_actions)
                .where(pending_actions.c.id == action_id)
                .where(pending_actions.c.state == only_if)
                .values(state=state)
            )

    # --- audit ---------------------------------------------------------------------------------
    def audit(self, **fields: Any) -> None:
        """One audit entry (the fields of `audit_row`), committed before this returns."""
        self.write_audit([audit_row(**fields)])

    def write_audit(self, rows: list[dict[str, Any]]) -> None:
        """Audit entries in one transaction, then the same lines to DOCKERBOT_AUDIT_FILE."""
        if not rows:
            return
        with self.engine.begin() as conn:
            conn.execute(insert(audit_log), rows)
        if self.audit_file is not None:
            text = "".join(
                json.dumps({**row, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row["at"]))})
                + "\n"
                for row in rows
            )
            if str(self.audit_file) == "-":
                print(text, end="", flush=True)
            else:
                with open(self.audit_file, "a", encoding="utf-8") as fh:
                    fh.write(text)

    def recent_audit(self, limit: int, visible: Callable[[str], bool] | None = None) -> list[dict[str, Any]]:
        """The newest `limit` entries, newest first; with `visible`, only entries whose host it passes."""
        found: list[dict[str, Any]] = []
        before: int | None = None
        page = limit if visible is None else max(limit, 200)
        with self.engine.connect() as conn:
            while len(found) < limit:
                query = select(audit_log).order_by(audit_log.c.id.desc()).limit(page)
                if before is not None:
                    query = query.where(audit_log.c.id < before)
                rows = [dict(r) for r in conn.execute(query).mappings().all()]
                found += [r for r in rows if visible is None or visible(r["host"])]
                if len(rows) < page or visible is None:
                    break
                before = rows[-1]["id"]
        return found[:limit]
