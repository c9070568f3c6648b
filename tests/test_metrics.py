"""Every metric /metrics exports moves when what it counts happens (the README lists them).

The engine-side counters are driven here through the router on the real engine; the Slack-side
ones are checked where their events are made (the list below names the test)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr
from slack_sdk.errors import SlackApiError

from bot import metrics
from bot.core.commands import Command
from bot.core.services import Services
from bot.core.settings import Settings
from bot.engine.hosts import DockerHost
from bot.jobs.scheduler import Scheduler
from bot.render.messages import Message, plain
from bot.sandbox import Engine
from bot.slack.client import make_web_client
from bot.slack.reply import SlackPoster
from bot.state.delivery import Delivery
from tests.chat import ChatBot
from tests.fakes.images import Spec, load_images
from tests.fakes.slack import FakeSlack

DAY = 86400

# Metric -> the test that makes it move.
CHECKED_BY = {
    "dockerbot_commands": "test_metrics.py::test_engine_side_counters_move",
    "dockerbot_buttons": "test_metrics.py::test_engine_side_counters_move",
    "dockerbot_pulls": "test_metrics.py::test_engine_side_counters_move",
    "dockerbot_pull_bytes": "test_metrics.py::test_engine_side_counters_move",
    "dockerbot_cleanup_runs": "test_metrics.py::test_engine_side_counters_move",
    "dockerbot_reclaimed_bytes": "test_metrics.py::test_engine_side_counters_move",
    "dockerbot_ack_seconds": "test_slack_http.py (ack histogram count)",
    "dockerbot_scheduler_failures": "test_metrics.py::test_a_failed_schedule_is_counted",
    "dockerbot_slack_api_errors": "test_metrics.py::test_slack_side_counters_move",
    "dockerbot_slack_retries": "test_metrics.py::test_slack_side_counters_move",
    "dockerbot_registry_lookups": "test_outdated.py::test_lookup_states_against_the_sandbox_registry",
    "dockerbot_scheduler_lease_held": (
        "test_replicas.py::test_two_replicas_background_one_runs_the_scheduler_and_the_gauge_says_which"
    ),
}


def value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels or None) or 0.0


def test_every_exported_metric_has_a_test() -> None:
    exported = {m.name for m in metrics.REGISTRY.collect()}
    assert exported == set(CHECKED_BY), "a metric without a test that makes it move, or a stale entry"


@pytest.mark.usefixtures("clean_engine")
def test_engine_side_counters_move(chat: ChatBot, clean_engine: Engine) -> None:
    before = {
        "commands": value("dockerbot_commands_total", command="images", outcome="ok"),
        "buttons": value("dockerbot_buttons_total", action="rmi.confirm", outcome="ok"),
        "pulls": value("dockerbot_pulls_total", outcome="ok"),
        "pull_bytes": value("dockerbot_pull_bytes_total"),
        "runs": value("dockerbot_cleanup_runs_total", outcome="ok"),
        "reclaimed": value("dockerbot_reclaimed_bytes_total"),
    }
    chat("images")
    chat("pull alpine")
    chat("rmi alpine")
    chat("confirm")
    after_rmi = value("dockerbot_reclaimed_bytes_total")
    load_images(clean_engine, [Spec([], 30 * DAY)])  # one dangling image
    chat('cleanup now --policy "dangling"')
    assert "1 image removed" in chat("confirm")

    assert value("dockerbot_commands_total", command="images", outcome="ok") == before["commands"] + 1
    assert value("dockerbot_buttons_total", action="rmi.confirm", outcome="ok") == before["buttons"] + 1
    assert value("dockerbot_pulls_total", outcome="ok") == before["pulls"] + 1
    assert value("dockerbot_pull_bytes_total") > before["pull_bytes"]
    assert value("dockerbot_cleanup_runs_total", outcome="ok") == before["runs"] + 1
    assert after_rmi > before["reclaimed"], "rmi's reclaimed bytes"
    assert value("dockerbot_reclaimed_bytes_total") > after_rmi, "cleanup's reclaimed bytes"


def test_a_failed_schedule_is_counted(services: Services) -> None:
    def broken(services: Services, host: DockerHost, params: dict) -> Message:
        raise RuntimeError("the runner broke")

    services.commands = [
        *services.commands,
        Command(name="brokenprobe", summary="", example="", run=lambda req, reply: None, scheduled=broken),
    ]
    posted: list[Message] = []

    class Recorder:
        def post(self, channel: str, message: Message) -> None:
            posted.append(message)

    scheduler = Scheduler(services, Delivery(services.store.engine, Recorder()))
    scheduler.start(paused=True)
    try:
        made = scheduler.add(
            "brokenprobe", "0 3 * * *", timezone="UTC", channel="C1", host="local", params={}, created_by="U1"
        )
        before = value("dockerbot_scheduler_failures_total", kind="brokenprobe")
        scheduler.run(made.id)
        assert value("dockerbot_scheduler_failures_total", kind="brokenprobe") == before + 1
        assert "failed: the runner broke" in posted[-1].text
    finally:
        scheduler.shutdown()


def test_slack_side_counters_move(settings: Settings, fake_slack: FakeSlack) -> None:
    client = make_web_client(
        settings.model_copy(
            update={"slack_api_url": fake_slack.api_url, "slack_bot_token": SecretStr("xoxb-t")}
        )
    )
    poster = SlackPoster(client)
    retries = value("dockerbot_slack_retries_total", reason="ratelimited")
    errors = value("dockerbot_slack_api_errors_total", method="chat.postMessage")
    fake_slack.fail("chat.postMessage", 429, retry_after=1)
    poster.post("C111", plain("after a rate limit"))  # retried, then posted
    assert value("dockerbot_slack_retries_total", reason="ratelimited") == retries + 1
    fake_slack.fail("chat.postMessage", error="channel_not_found")
    with pytest.raises(SlackApiError):
        poster.post("C111", plain("to a channel that is gone"))
    assert value("dockerbot_slack_api_errors_total", method="chat.postMessage") == errors + 1
