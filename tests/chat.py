"""A chat-transcript test bot (after Errbot's testbot): say a line, read what the bot answered.

It drives the real terminal adapter, so tests read like a conversation:

    assert "Using default tag: latest" in chat("/docker pull ubuntu")

Typed lines come from the terminal user (an admin); `say_as` and `press_as` act as someone else.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

from bot.core.router import Router
from bot.core.services import Services
from bot.terminal.shell import Shell, TerminalRef, TerminalReply

# A card's buttons (lower-cased label -> action id, value) and the message they belong to.
Card = tuple[dict[str, tuple[str, str]], TerminalRef | None]


class ChatBot:
    def __init__(self, router: Router, files_dir: Path | None = None) -> None:
        self.out = io.StringIO()
        self.shell = Shell(router, out=self.out, files_dir=files_dir)

    def __call__(self, line: str) -> str:
        return self._output_of(lambda: self.shell.run_line(line))

    @property
    def services(self) -> Services:
        return self.shell.router.services

    @property
    def transcript(self) -> str:
        return self.out.getvalue()

    def card(self) -> Card:
        """The latest card's buttons, kept to press again after the card has changed."""
        return dict(self.shell.buttons), self.shell.buttons_ref

    def say_as(self, line: str, user: str, *, channel: str = "C1") -> str:
        """A command from a Slack user in a channel (not the terminal's admin)."""
        reply = TerminalReply(self.shell)
        return self._output_of(
            lambda: self.shell.router.handle(line, user=user, channel=channel, reply=reply)
        )

    def press_as(self, label: str, user: str, *, local: bool = False, card: Card | None = None) -> str:
        """Press a button of the latest card (or of `card`, kept earlier) as another Slack user would."""
        buttons, ref = card or self.card()
        action_id, value = buttons[label.lower()]
        reply = TerminalReply(self.shell)
        return self._output_of(
            lambda: self.shell.router.press(
                action_id, value, user=user, channel="terminal", message=ref, reply=reply, local=local
            )
        )

    def _output_of(self, act: Callable[[], None]) -> str:
        start = len(self.out.getvalue())
        act()
        return self.out.getvalue()[start:]
