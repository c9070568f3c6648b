"""Who may do what: a role matrix through signed Slack requests, re-checks at the click, and no
secret anywhere (logs, replies, audit)."""

from __future__ import annotations

import io
import json
import logging
import time
from pathlib import Path

import pytest
import yaml

from bot.core.access import Access, AccessPolicy
from bot.core.services import Services
from bot.core.settings import Settings
from bot.logs import make_handler
from bot.sandbox import Engine
from tests.conftest import BOT_TOKEN, SIGNING_SECRET, SlackHttpBot
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_requests import block_actions_body, block_actions_payload, post_signed

ALLOWED, OTHER = "CALLOWED", "COTHER"
ACCESS = {
    "channels": [ALLOWED],
    "default_role": "viewer",
    "roles": {"admin": ["UADMIN"], "operator": ["S0OPS"]},  # operators by user group
    "hosts": {"local": {"operator": ["USTAGE"]}},
}


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    path = tmp_path / "dockerbot.yml"
    path.write_text(yaml.safe_dump({"access": ACCESS}))
    return settings.model_copy(update={"config": path})


@pytest.fixture
def fake_slack(fake_slack: FakeSlack) -> FakeSlack:
    fake_slack.set_usergroup("S0OPS", ["UOPS"])
    return fake_slack


def _ask(bot: SlackHttpBot, text: str, user: str, channel: str, tag: str) -> str:
    return bot.ask(text, user=user, channel=channel, tag=tag)


# (user, role) × command → allowed?
MATRIX = {
    "UVIEW": {"help": True, "images": True, "pull busybox": False, "rmi busybox": False, "audit": False},
    "UOPS": {"help": True, "images": True, "pull busybox": True, "rmi busybox": False, "audit": False},
    "USTAGE": {"help": True, "images": True, "pull busybox": True, "rmi busybox": False, "audit": False},
    "UADMIN": {"help": True, "images": True, "pull busybox": True, "rmi busybox": True, "audit": True},
}


def test_role_matrix_through_signed_requests(slack_http: SlackHttpBot, engine: Engine) -> None:
    engine.cli("pull", "busybox")
    # The group cache is filled in the background; give it a moment, as Slack would.
    deadline = time.monotonic() + 5
    while not slack_http.slack.calls("usergroups.users.list") and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    n = 0
    for user, expected in MATRIX.items():
        for text, allowed in expected.items():
            n += 1
            seen = _ask(slack_http, text, user, ALLOWED, f"m{n}")
            refused = "needs the" in seen
            assert refused is not allowed, f"{user} {text}: {seen[:300]}"
            if refused:
                assert "role on host `local`" in seen and '"response_type": "ephemeral"' in seen
            n += 1
            elsewhere = _ask(slack_http, text, user, OTHER, f"m{n}")
            assert "does not answer in this channel" in elsewhere and "<#CALLOWED>" in elsewhere
    assert engine.cli("image", "inspect", "busybox", check=False).returncode == 0, "nothing was removed"


def test_help_shows_only_what_each_may_run(slack_http: SlackHttpBot) -> None:
    viewer = _ask(slack_http, "help", "UVIEW", ALLOWED, "hv")
    admin = _ask(slack_http, "help", "UADMIN", ALLOWED, "ha")
    for command in ("rmi", "audit", "pull"):
        assert f"/docker {command}`*" not in viewer and f"/docker {command}`*" in admin
    assert "your role: viewer" in viewer and "your role: admin" in admin


def test_refusals_are_audited(slack_http: SlackHttpBot, services: Services) -> None:
    _ask(slack_http, "rmi busybox", "UVIEW", ALLOWED, "audit-refusal")
    entry = services.store.recent_audit(1)[0]
    assert entry["action"] == "rmi.refused" and entry["user"] == "UVIEW"
    assert entry["result"] == "needs admin, has viewer"


def test_a_revoked_admins_click_is_refused(
    slack_http: SlackHttpBot, services: Services, engine: Engine
) -> None:
    engine.cli("pull", "busybox")
    card = json.loads(_ask(slack_http, "rmi busybox", "UADMIN", ALLOWED, "card"))
    confirm = next(el for b in card["blocks"] if b["type"] == "actions" for el in b["elements"])
    services.access = Access(AccessPolicy.from_config({**ACCESS, "roles": {}}))  # UADMIN is no admin now
    payload = block_actions_payload(
        confirm["action_id"],
        confirm["value"],
        user_id="UADMIN",
        channel_id=ALLOWED,
        response_url=slack_http.slack.response_url("click"),
    )
    assert post_signed(slack_http.url, block_actions_body(payload), slack_http.secret)[0] == 200
    [answer] = slack_http.slack.wait_for("response_url", lambda c: c.tag == "click")
    assert "needs the *admin* role" in answer.body["text"] and answer.body["response_type"] == "ephemeral"
    assert engine.cli("image", "inspect", "busybox", check=False).returncode == 0


def test_no_secret_reaches_logs_replies_or_the_audit(
    slack_http: SlackHttpBot, services: Services, engine: Engine
) -> None:
    """Everything the bot writes (its log handler at DEBUG, every Slack body, the audit log)
    is searched for the bot token and the signing secret."""
    stream = io.StringIO()
    handler = make_handler(stream, "json", (BOT_TOKEN, SIGNING_SECRET))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        for i, text in enumerate(
            ["help", "images", "pull nosuchrepo-xyz", "rmi busybox", "bogus --x", 'help "']
        ):
            _ask(slack_http, text, "UADMIN", ALLOWED, f"s{i}")
        time.sleep(0.5)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    logs = stream.getvalue()
    assert "Authorization" in logs or "Bearer" in logs or "chat.postMessage" in logs, (
        "DEBUG logs were written"
    )
    bodies = [json.dumps(c.body) for c in slack_http.slack.calls()]
    audit = [json.dumps(e, default=str) for e in services.store.recent_audit(200)]
    for secret in (BOT_TOKEN, SIGNING_SECRET):
        assert secret not in logs
        assert not any(secret in b for b in bodies)
        assert not any(secret in a for a in audit)
