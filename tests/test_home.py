"""The App Home tab is published on app_home_opened and fits Slack's 100-block limit with 50 hosts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bot.core.settings import Settings
from bot.sandbox import Engine
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_requests import app_home_opened_payload


@pytest.fixture
def settings(settings: Settings, engine: Engine, tmp_path: Path) -> Settings:
    hosts = {"main": {"url": engine.docker_host}}
    hosts.update({f"gone-{i:02d}": {"url": f"unix:///nonexistent/dockerbot/{i}.sock"} for i in range(49)})
    path = tmp_path / "dockerbot.yml"
    path.write_text(yaml.safe_dump({"hosts": hosts}, sort_keys=False))
    return settings.model_copy(update={"config": path})


def test_home_tab_with_fifty_hosts(slack_socket: FakeSlack) -> None:
    payload = app_home_opened_payload(event_id="Ev1")
    envelope = slack_socket.send_envelope("events_api", payload)
    slack_socket.wait_for_ack(envelope, timeout=3)
    [call] = slack_socket.wait_for("views.publish", timeout=20)
    assert call.ok, call.response
    view = call.body["view"]
    assert call.body["user_id"] == "U111" and view["type"] == "home"
    assert len(view["blocks"]) <= 100
    text = str(view["blocks"])
    assert "1 of 50 up" in text
    assert "main (default)" in text and "gone-48" in text
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in view["blocks"])


def test_home_shows_next_runs_and_the_last_cleanup(services, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from bot.jobs.scheduler import Scheduler
    from bot.render.messages import Message
    from bot.slack.home import home_blocks
    from bot.state.delivery import Delivery

    class Quiet:
        def post(self, channel: str, message: Message) -> None:
            pass

    scheduler = Scheduler(services, Delivery(services.store.engine, Quiet()))
    services.scheduler = scheduler
    scheduler.start()
    try:
        assert "No scheduled cleanup has run yet." in str(home_blocks(services, "U1"))
        made = scheduler.add(
            "cleanup",
            "30 4 * * *",
            timezone="UTC",
            channel="C1",
            host="main",
            params={"policy": "dangling"},
            created_by="U1",
        )
        tokyo = scheduler.add(  # no daylight saving: 03:00 JST is 18:00 UTC the day before
            "report",
            "0 3 * * *",
            timezone="Asia/Tokyo",
            channel="C1",
            host="main",
            params={},
            created_by="U1",
        )
        scheduler.run(made.id)
        text = str(home_blocks(services, "U1"))
        assert f"04:30 UTC — cleanup on `main` (`{made.id}`, `30 4 * * *` UTC)" in text
        assert f"03:00 JST — report on `main` (`{tokyo.id}`, `0 3 * * *` Asia/Tokyo)" in text
        assert "on `main` (done)" in text
        assert "cleanup" in scheduler.runners and "report" in scheduler.runners
    finally:
        scheduler.shutdown()
        services.scheduler = None
