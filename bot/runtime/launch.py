"""`make run`: in Slack when tokens are set; otherwise the terminal against DOCKER_HOST,
or, when no engine answers there, against a private sandbox engine with a seeded mirror."""

from __future__ import annotations

import os
import sys

import docker

from bot.__main__ import main
from bot.runtime.startup import load_settings


def engine_answers() -> bool:
    try:
        client = docker.from_env(timeout=3, use_context=False)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - any failure means "no engine here"
        return False


def launch(argv: list[str]) -> None:
    settings = load_settings()
    if settings.slack_bot_token:
        mode = "Socket Mode" if settings.slack_app_token else "HTTP mode"
        print(f"dockerbot: Slack tokens found, serving Slack ({mode}).", flush=True)
        main(["serve", *argv])
        return
    address = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if engine_answers():
        print(f"dockerbot: no Slack tokens; terminal adapter on the engine at {address}.", flush=True)
        main(["shell"])
        return
    from bot.sandbox import Sandbox

    print(
        f"dockerbot: no Slack tokens and no engine answers at {address};\n"
        "starting a private sandbox engine with a seeded registry mirror (try `pull ubuntu`)…",
        flush=True,
    )
    with Sandbox() as box:
        os.environ["DOCKER_HOST"] = box.docker_host
        # `/docker outdated` asks the seeded registry (the engine's mirror) for Docker Hub names.
        os.environ.setdefault("DOCKERBOT_HUB_REGISTRY_URL", box.registry.url)
        print(f"dockerbot: sandbox engine at {box.docker_host}; terminal adapter ready.", flush=True)
        main(["shell"])


if __name__ == "__main__":
    launch(sys.argv[1:])
