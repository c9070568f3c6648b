"""The terminal adapter: piped commands, rendered text, buttons pressed by typing their label."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

from bot.core.commands import ActionRequest, Command, Reply, Request
from bot.core.router import Router
from bot.core.services import Services
from bot.render.messages import Message, actions, button, plain, section
from handlers import COMMANDS
from tests.chat import ChatBot

ROOT = Path(__file__).resolve().parent.parent


def _run_shell(stdin: str, env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DOCKERBOT_"))}
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, "-m", "bot", "shell"],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )


def test_piped_commands_run_and_exit_at_eof(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = _run_shell(
        "/docker help\nhelp pull\nimgaes\n",
        {"DOCKER_HOST": engine.docker_host, "DOCKERBOT_DATA_DIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert "/docker images — " in result.stdout
    assert "/docker pull" in result.stdout
    assert "Did you mean images?" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_bad_configuration_stops_startup_naming_the_key(tmp_path: Path) -> None:
    result = _run_shell("help\n", {"DOCKERBOT_WORKERS": "many", "DOCKERBOT_DATA_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert "DOCKERBOT_WORKERS" in result.stderr
    assert "Traceback" not in result.stderr


def _card_services(services: Services, pressed: list[str]) -> Services:
    def card(req: Request, reply: Reply) -> None:
        reply.send(
            Message(
                text="Sure?",
                blocks=[
                    section("Remove *everything*?"),
                    actions(
                        button("Confirm", "card.confirm", value="id-1", style="danger"),
                        button("Cancel", "card.cancel", value="id-1"),
                    ),
                ],
            )
        )

    def confirm(req: ActionRequest, reply: Reply) -> None:
        pressed.append(f"confirm {req.value} by {req.user}")
        reply.update(req.message, plain("Done."))

    def cancel(req: ActionRequest, reply: Reply) -> None:
        pressed.append("cancel")
        reply.update(req.message, plain("Cancelled."))

    extra = Command(
        name="card",
        summary="asks",
        example="/docker card",
        run=card,
        actions={"card.confirm": confirm, "card.cancel": cancel},
    )
    return dataclasses.replace(services, commands=[*COMMANDS, extra])


def test_buttons_print_as_labels_and_typing_a_label_presses_it(services: Services) -> None:
    pressed: list[str] = []
    chat = ChatBot(Router(_card_services(services, pressed)))
    out = chat("card")
    assert "Remove everything?" in out
    assert "[Confirm] [Cancel]" in out
    assert chat("CONFIRM").strip() == "Done."
    assert pressed == ["confirm id-1 by terminal"]
    # The card was replaced: its buttons are gone, so the label is just an unknown command now.
    assert "Unknown command confirm" in chat("confirm")
    assert pressed == ["confirm id-1 by terminal"]
