"""A chat-transcript test bot (after Errbot's testbot): say a line, read what the bot answered.

It drives the real terminal adapter, so tests read like a conversation:

    assert "Using default tag: latest" in chat("/docker pull ubuntu")
"""

from __future__ import annotations

import io
from pathlib import Path

from bot.router import Router
from bot.terminal import Shell


class ChatBot:
    def __init__(self, router: Router, files_dir: Path | None = None) -> None:
        self.out = io.StringIO()
        self.shell = Shell(router, out=self.out, files_dir=files_dir)

    def __call__(self, line: str) -> str:
        start = len(self.out.getvalue())
        self.shell.run_line(line)
        return self.out.getvalue()[start:]

    @property
    def transcript(self) -> str:
        return self.out.getvalue()
