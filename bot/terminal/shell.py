"""The terminal adapter: `python -m bot shell`.

Reads one command per line (with or without the `/docker` prefix), prints every
message as text, and lets you press a button by typing its label.
"""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from bot.core.router import Router
from bot.render.messages import File, Message
from bot.render.text import render

USER = "terminal"  # the local user already holds the engine, so they are an admin
CHANNEL = "terminal"


@dataclass(frozen=True)
class TerminalRef:
    number: int


class TerminalReply:
    # No rate limit to respect: progress is shown twice a second, the final state at once.
    update_interval = 0.5
    rate_limited = False

    def __init__(self, shell: Shell) -> None:
        self.shell = shell

    def send(self, message: Message, *, live: bool = False) -> TerminalRef:
        ref = TerminalRef(next(self.shell.counter))
        self.shell.show(ref, message)
        return ref

    def update(self, ref: TerminalRef, message: Message, *, final: bool = False) -> None:  # type: ignore[override]
        self.shell.show(ref, message)

    def private(self, message: Message) -> None:
        self.shell.show(None, message)


class Shell:
    def __init__(self, router: Router, out: TextIO = sys.stdout, files_dir: Path | None = None) -> None:
        self.router = router
        self.out = out
        self.files_dir = files_dir
        self.counter = itertools.count(1)
        # The latest message that has buttons, and its buttons by lower-cased label.
        self.buttons: dict[str, tuple[str, str]] = {}
        self.buttons_ref: TerminalRef | None = None

    def show(self, ref: TerminalRef | None, message: Message) -> None:
        print(render(message), file=self.out)
        for file in message.files:
            print(self._save(file), file=self.out)
        print(file=self.out, flush=True)
        if ref is None:
            return
        if message.buttons:
            self.buttons = {
                b["text"]["text"].lower(): (b["action_id"], b.get("value", "")) for b in message.buttons
            }
            self.buttons_ref = ref
        elif ref == self.buttons_ref:  # the card was replaced: its buttons are gone
            self.buttons, self.buttons_ref = {}, None

    def _save(self, file: File) -> str:
        name, content = file.name, file.content
        if self.files_dir is None and isinstance(content, str):
            return f"--- {name} ---\n{content}"
        files_dir = self.files_dir or Path("data/files")
        files_dir.mkdir(parents=True, exist_ok=True)
        path = files_dir / Path(name).name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return f"({file.title or file.name} saved to {path})"

    def run_line(self, line: str) -> None:
        line = line.strip()
        if not line or line.startswith("#"):
            return
        reply = TerminalReply(self)
        pressed = self.buttons.get(line.lower())
        if pressed and self.buttons_ref is not None:
            action_id, value = pressed
            self.router.press(
                action_id,
                value,
                user=USER,
                channel=CHANNEL,
                message=self.buttons_ref,
                reply=reply,
                local=True,
            )
            return
        text = line.removeprefix("/docker").strip() if line.split()[0] == "/docker" else line
        self.router.handle(text, user=USER, channel=CHANNEL, reply=reply, local=True)

    def loop(self, stdin: TextIO = sys.stdin) -> None:
        interactive = stdin.isatty()
        while True:
            if interactive:
                print("docker> ", end="", file=self.out, flush=True)
            line = stdin.readline()
            if not line:  # EOF: piped input is done
                return
            if line.strip() in ("exit", "quit"):
                return
            self.run_line(line)


class TerminalPoster:
    """Scheduled results in the terminal: printed as they come, with the channel they were for."""

    def __init__(self, shell: Shell) -> None:
        self.shell = shell

    def post(self, channel: str, message: Message) -> None:
        print(f"[scheduled, for {channel}]", file=self.shell.out)
        self.shell.show(None, message)
