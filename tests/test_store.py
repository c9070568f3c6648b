"""Pending confirmations: single use under concurrency, expiry, and surviving a restart."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from bot.state.store import GroupAudit, Store, audit_row, database_url


def _store(url: str) -> Store:
    return Store(url)


def test_ten_threads_claim_once(db_url: str) -> None:
    store = _store(db_url)
    action = store.create_pending(kind="rmi", user="U1", channel="C1", host="local", payload={"x": 1}, ttl=60)
    barrier = threading.Barrier(10)
    wins: list[bool] = []

    def press() -> None:
        barrier.wait()
        wins.append(store.claim(action.id, by="U1", new_state="running").won)

    threads = [threading.Thread(target=press) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1
    again = store.claim(action.id, by="U1", new_state="running")
    assert not again.won and again.reason == "running"
    store.finish(action.id, "removed")
    assert store.claim(action.id, by="U1", new_state="running").reason == "done"


def test_expired_action_cannot_be_claimed(db_url: str) -> None:
    store = _store(db_url)
    action = store.create_pending(kind="rmi", user="U1", channel="C1", host="local", payload={}, ttl=0.2)
    time.sleep(0.3)
    claim = store.claim(action.id, by="U1", new_state="running")
    assert not claim.won and claim.reason == "expired"
    assert store.get_pending(action.id).state == "expired"  # type: ignore[union-attr]


def test_unknown_id_is_missing(db_url: str) -> None:
    claim = _store(db_url).claim("forged-id", by="U1", new_state="running")
    assert not claim.won and claim.reason == "missing"


def test_pending_action_and_audit_survive_a_restart(db_url: str) -> None:
    store = _store(db_url)
    action = store.create_pending(
        kind="rmi", user="U1", channel="C1", host="local", payload={"images": ["sha256:ab"]}, ttl=60
    )
    store.audit(user="U1", channel="C1", host="local", action="rmi.preview", result="card posted")
    store.close()
    reopened = _store(db_url)
    assert reopened.get_pending(action.id).payload == {"images": ["sha256:ab"]}  # type: ignore[union-attr]
    assert reopened.claim(action.id, by="U1", new_state="running").won
    assert reopened.recent_audit(5)[0]["action"] == "rmi.preview"


def test_audit_json_lines_file(tmp_path: Path) -> None:
    import json

    path = tmp_path / "audit.jsonl"
    store = Store(database_url(tmp_path, None), audit_file=path)
    store.audit(
        user="U1", channel="C1", host="local", action="rmi.confirm", result="ok", tags=["ubuntu:latest"]
    )
    entry = json.loads(path.read_text().splitlines()[0])
    assert (
        entry["action"] == "rmi.confirm"
        and entry["tags"] == ["ubuntu:latest"]
        and entry["time"].endswith("Z")
    )


def test_group_audit_commits_every_entry_once_without_a_flush(db_url: str, tmp_path: Path) -> None:
    """Eight threads add 150 entries each; commits run while others add. Every entry is in the
    database and in the JSON lines file exactly once, with no flush: a committer takes up what
    arrived during its commit before it lets go."""
    import json

    path = tmp_path / "audit.jsonl"
    store = Store(db_url, audit_file=path)
    entries = GroupAudit(store)
    barrier = threading.Barrier(8)

    def add_many(thread: int) -> None:
        barrier.wait()
        for i in range(150):
            entries.add(
                audit_row(
                    user="U1", channel="C1", host="local", action="cleanup.remove", result=f"{thread}-{i}"
                )
            )

    threads = [threading.Thread(target=add_many, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    in_db = [row["result"] for row in store.recent_audit(5000)]
    in_file = [json.loads(line)["result"] for line in path.read_text().splitlines()]
    expected = {f"{t}-{i}" for t in range(8) for i in range(150)}
    assert len(in_db) == len(in_file) == 1200
    assert set(in_db) == set(in_file) == expected
