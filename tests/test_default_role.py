"""Deny by default: with no access configuration a Slack user has no role; `default_role: viewer`
(in the YAML config or DOCKERBOT_DEFAULT_ROLE) is a choice an admin writes down."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bot.core.settings import Settings
from bot.sandbox import Engine
from tests.conftest import SlackHttpBot
from tests.test_hardening import ask


@pytest.fixture(params=["unconfigured", "env", "yaml"])
def settings(request: pytest.FixtureRequest, settings: Settings, tmp_path: Path) -> Settings:
    if request.param == "unconfigured":
        return settings.model_copy(update={"default_role": Settings.model_fields["default_role"].default})
    if request.param == "env":
        return settings.model_copy(update={"default_role": "viewer"})
    path = tmp_path / "dockerbot.yml"
    path.write_text(yaml.safe_dump({"access": {"default_role": "viewer"}}))
    return settings.model_copy(update={"config": path, "default_role": "none"})


def test_no_configuration_no_role(
    request: pytest.FixtureRequest, slack_http: SlackHttpBot, engine: Engine
) -> None:
    assert Settings.model_fields["default_role"].default == "none"
    seen = ask(slack_http, "images", "UANYONE", "images", channel="C1")
    configured = request.node.callspec.params["settings"] != "unconfigured"
    if configured:
        assert "needs the" not in seen and "IMAGE" in seen.upper()
    else:
        assert "needs the *viewer* role on host `local`; you have no role there" in seen
        assert '"response_type": "ephemeral"' in seen
