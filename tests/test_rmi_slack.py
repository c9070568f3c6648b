"""rmi through Slack: the card, a signed block_actions Confirm, and the result replacing the card."""

from __future__ import annotations

import pytest

from bot.core.settings import Settings
from bot.sandbox import Engine
from tests.conftest import SlackHttpBot
from tests.fakes.slack_requests import block_actions_body, block_actions_payload, button_labelled, post_signed


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"admins": ("U111",)})


def _card(bot: SlackHttpBot, text: str) -> dict:
    status, _ = bot.command(text, user="U111", tag="card")
    assert status == 200
    [call] = bot.slack.wait_for("response_url", lambda c: c.tag == "card")
    return call.body


def _press(bot: SlackHttpBot, card: dict, label: str, *, user: str, tag: str) -> int:
    button = button_labelled(card["blocks"], label)
    payload = block_actions_payload(
        button["action_id"],
        button["value"],
        user_id=user,
        response_url=bot.slack.response_url(tag),
        message=card,
    )
    status, _ = post_signed(bot.url, block_actions_body(payload), bot.secret)
    return status


def test_confirm_replaces_the_card_with_the_result(slack_http: SlackHttpBot, clean_engine: Engine) -> None:
    clean_engine.cli("pull", "ubuntu")
    card = _card(slack_http, "rmi ubuntu")
    assert card["response_type"] == "in_channel"
    confirm = next(el for b in card["blocks"] if b["type"] == "actions" for el in b["elements"])
    assert confirm["style"] == "danger" and "confirm" in confirm, "Slack's own are-you-sure dialog"
    assert "ubuntu" not in confirm["value"], "the button carries an opaque id, never the command"

    assert _press(slack_http, card, "Confirm", user="U111", tag="done") == 200
    [result] = slack_http.slack.wait_for("response_url", lambda c: c.tag == "done")
    assert result.body["replace_original"] is True
    assert "Untagged: ubuntu:latest" in str(result.body["blocks"])
    assert not any(b["type"] == "actions" for b in result.body["blocks"]), "buttons disappear"
    assert clean_engine.cli("image", "inspect", "ubuntu", check=False).returncode != 0


def test_someone_else_gets_a_private_refusal(slack_http: SlackHttpBot, clean_engine: Engine) -> None:
    clean_engine.cli("pull", "ubuntu")
    card = _card(slack_http, "rmi ubuntu")
    assert _press(slack_http, card, "Confirm", user="U222", tag="other") == 200
    [refusal] = slack_http.slack.wait_for("response_url", lambda c: c.tag == "other")
    assert refusal.body["response_type"] == "ephemeral" and refusal.body["replace_original"] is False
    assert "Only <@U111>, who asked, or an admin can decide this" in refusal.body["text"]
    assert clean_engine.cli("image", "inspect", "ubuntu", check=False).returncode == 0


def test_a_forged_action_id_is_refused(slack_http: SlackHttpBot, clean_engine: Engine) -> None:
    clean_engine.cli("pull", "ubuntu")
    payload = block_actions_payload(
        "dockerbot:rmi.confirm",
        "forged-id",
        user_id="U111",
        response_url=slack_http.slack.response_url("forged"),
    )
    assert post_signed(slack_http.url, block_actions_body(payload), slack_http.secret)[0] == 200
    [refusal] = slack_http.slack.wait_for("response_url", lambda c: c.tag == "forged")
    assert "unknown" in refusal.body["text"]
    assert clean_engine.cli("image", "inspect", "ubuntu", check=False).returncode == 0
