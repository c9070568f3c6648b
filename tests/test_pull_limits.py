"""Issue 15, item 4: pulls cannot starve the bot. A total deadline ends a pull that a registry keeps
alive by trickling; caps per user, per host and in all keep workers free for reads, so `images`
answers while pulls hang on a registry that never answers. Through signed requests, on a real engine."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from bot.core.settings import Settings
from bot.sandbox import Engine, Sandbox, push_image
from tests.conftest import SlackHttpBot
from tests.fakes.registry import FakeRegistry
from tests.test_hardening import ask

CHANNEL = "CPULL"
OPERATORS = ["UONE", "UTWO", "UTHREE", "UFOUR"]


@pytest.fixture
def settings(settings: Settings, engine: Engine, tmp_path: Path) -> Settings:
    path = tmp_path / "dockerbot.yml"
    config = {
        "default_host": "local",
        "hosts": {"local": {"url": engine.docker_host}, "prod": {"url": engine.docker_host}},
        "access": {"default_role": "viewer", "roles": {"operator": OPERATORS}},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return settings.model_copy(
        update={
            "config": path,
            "workers": 8,
            "max_pulls_per_user": 2,
            "max_pulls_per_host": 3,
            "max_pulls": 4,
            "pull_inactivity_timeout": 60,
            "pull_deadline": 4,
        }
    )


def started(bot: SlackHttpBot, text: str, user: str, tag: str) -> str:
    """What the user saw first: the live message of a pull, or a refusal."""
    return ask(bot, text, user, tag, channel=CHANNEL)


def test_caps_per_user_host_and_total_keep_reads_answering(
    slack_http: SlackHttpBot, fake_registry: FakeRegistry, engine: Engine
) -> None:
    engine.cli("pull", "busybox")
    fake_registry.stall_manifests = True  # a registry that never answers: each pull hangs
    image = f"{fake_registry.address}/library/hang"
    assert "Pulling" in started(slack_http, f"pull {image}:1", "UONE", "p1")
    assert "Pulling" in started(slack_http, f"pull {image}:2", "UONE", "p2")
    assert "You already have 2 pulls running" in started(slack_http, f"pull {image}:3", "UONE", "p3")
    assert "Pulling" in started(slack_http, f"pull {image}:4", "UTWO", "p4")
    assert "`local` is already pulling 3 images" in started(slack_http, f"pull {image}:5", "UTWO", "p5")
    assert "Pulling" in started(slack_http, f"pull {image}:6 --host prod", "UTHREE", "p6")
    busy = started(slack_http, f"pull {image}:7 --host prod", "UFOUR", "p7")
    assert "The bot is already running 4 pulls" in busy
    before = time.monotonic()
    assert "busybox" in started(slack_http, "images", "UVIEWER", "read")
    assert time.monotonic() - before < 5, "a read waited behind the pulls"
    deadline = time.monotonic() + 30  # the four pulls reach the registry in their own time (load)
    while len(fake_registry.requests("manifests")) < 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(fake_registry.requests("manifests")) >= 4, "each admitted pull reached the registry"


def test_a_trickling_registry_cannot_keep_a_pull_past_the_deadline(
    slack_http: SlackHttpBot, fake_registry: FakeRegistry, engine: Engine, sandbox: Sandbox
) -> None:
    # A layer of 1 MiB of random bytes, which no image on the engine shares.
    push_image(sandbox.engine, sandbox.registry, "trickle/big:1", {}, big_file_mb=1)
    fake_registry.trickle = (512, 0.5)  # 1 kB a second: never idle for the inactivity limit
    image = f"{fake_registry.address}/trickle/big:1"
    engine.cli("rmi", "-f", image, check=False)
    started_at = time.monotonic()
    assert slack_http.command(f"pull {image}", user="UONE", channel=CHANNEL, tag="trickle")[0] == 200
    deadline = time.monotonic() + 40
    final = ""
    while time.monotonic() < deadline:
        updates = [json.dumps(c.body) for c in slack_http.slack.calls("chat.update")]
        final = next((u for u in updates if "the most a pull may take" in u), "")
        if final:
            break
        time.sleep(0.2)
    assert final, "the pull was not stopped: " + "\n".join(updates[-2:])
    assert time.monotonic() - started_at < 20
    assert engine.cli("image", "inspect", image, check=False).returncode != 0
