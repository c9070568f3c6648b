"""The bot SIGKILLed in the middle of a scheduled cleanup: after a restart the schedule is intact,
the interrupted run is reported once, and no pending confirmation or audit entry is lost or doubled."""

from __future__ import annotations

import signal
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.core.services import build_services
from bot.core.settings import Settings
from bot.jobs.scheduler import Scheduler
from bot.render.messages import Message
from bot.sandbox import Engine
from bot.state.delivery import Delivery
from handlers import COMMANDS
from tests.botprocess import start_bot
from tests.fakes.images import Spec, load_images
from tests.fakes.slack import FakeSlack

ROOT = Path(__file__).resolve().parent.parent
DAY = 86400.0


class Quiet:
    def post(self, channel: str, message: Message) -> None:
        pass


def _rows(db: Path, query: str) -> list[tuple]:
    with sqlite3.connect(db, timeout=30) as conn:
        return conn.execute(query).fetchall()


def test_sigkill_mid_cleanup_then_restart(
    clean_engine: Engine, fake_slack: FakeSlack, settings: Settings, tmp_path: Path
) -> None:
    load_images(clean_engine, [Spec([], 400 * DAY) for _ in range(300)])
    data = tmp_path / "state"
    services = build_services(settings.model_copy(update={"data_dir": data}), COMMANDS)
    scheduler = Scheduler(services, Delivery(services.store.engine, Quiet()))
    scheduler.start(paused=True)
    schedule = scheduler.add(
        "cleanup",
        "0 3 * * *",
        timezone="UTC",
        channel="CSUM",
        host="local",
        params={"policy": "dangling, grace 0"},
        created_by="U1",
    )
    scheduler.aps.modify_job(schedule.id, next_run_time=datetime.now(UTC) + timedelta(seconds=3))
    scheduler.shutdown()
    pending = services.store.create_pending(
        kind="rmi", user="U1", channel="C1", host="local", payload={"plans": []}, ttl=3600
    )
    services.store.audit(user="U1", channel="C1", host="local", action="rmi.preview", result="card posted")
    services.close()
    db = data / "dockerbot.sqlite3"

    bot = start_bot(clean_engine, fake_slack, data).proc
    try:
        deadline = time.monotonic() + 60
        while not _rows(db, "SELECT id FROM schedule_runs WHERE state = 'running'"):
            assert time.monotonic() < deadline, "the scheduled cleanup did not start"
            time.sleep(0.02)
        bot.send_signal(signal.SIGKILL)
        bot.wait(10)
    finally:
        if bot.poll() is None:
            bot.kill()
    left = len(clean_engine.cli("images", "-aq").stdout.split())
    assert 0 < left <= 300, "killed in the middle of the run"
    audit_before = _rows(db, "SELECT at, user, action, image_id, result FROM audit_log ORDER BY id")

    again = start_bot(clean_engine, fake_slack, data).proc
    try:
        [notice] = fake_slack.wait_for(
            "chat.postMessage", lambda c: "was interrupted" in c.body.get("text", ""), timeout=30
        )
        assert notice.body["channel"] == "CSUM" and schedule.id in notice.body["text"]
    finally:
        again.send_signal(signal.SIGTERM)
        again.wait(30)
    assert _rows(db, f"SELECT cancelled FROM schedules WHERE id = '{schedule.id}'") == [(0,)]
    assert _rows(db, f"SELECT id FROM apscheduler_jobs WHERE id = '{schedule.id}'") == [(schedule.id,)]
    assert _rows(db, f"SELECT state FROM pending_actions WHERE id = '{pending.id}'") == [("pending",)]
    audit_after = _rows(db, "SELECT at, user, action, image_id, result FROM audit_log ORDER BY id")
    assert audit_after[: len(audit_before)] == audit_before, "nothing lost"
    assert len(set(audit_after)) == len(audit_after), "nothing doubled"
    states = _rows(db, "SELECT state FROM schedule_runs")
    assert states == [("interrupted",)]
    interrupted = [
        c for c in fake_slack.calls("chat.postMessage") if "was interrupted" in c.body.get("text", "")
    ]
    assert len(interrupted) == 1, "reported once"
