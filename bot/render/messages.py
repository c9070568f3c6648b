"""Transport-free messages: Block Kit blocks plus fallback text.

Handlers build messages with these helpers and never import Slack; the Slack
adapter sends the blocks as they are, the terminal adapter renders them as text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Block = dict[str, Any]

# Slack's limits (Block Kit reference: https://docs.slack.dev/reference/block-kit/blocks).
MAX_SECTION_TEXT = 3000
MAX_BUTTON_LABEL = 75
MAX_HEADER = 150

ACTION_PREFIX = "dockerbot:"


@dataclass(frozen=True)
class File:
    """A file offered with a message (uploaded in Slack, saved in the terminal): text, or bytes (a PNG)."""

    name: str
    content: str | bytes
    title: str = ""


@dataclass
class Message:
    text: str  # fallback for notifications and screen readers; always set
    blocks: list[Block] = field(default_factory=list)
    in_channel: bool = False  # visible to the channel, not only to the requester
    files: list[File] = field(default_factory=list)
    facts: dict[str, Any] = field(
        default_factory=dict
    )  # numbers for summaries (e.g. bytes reclaimed); not shown
    # Which end of the body to keep where a chat limits a message's length (bot/slack/limits.py):
    # the start of a table, the end of a pull's output.
    keep: Literal["start", "end"] = "start"

    @property
    def buttons(self) -> list[Block]:
        return [el for b in self.blocks if b.get("type") == "actions" for el in b["elements"]]


def plain(text: str) -> Message:
    """A one-section message."""
    return Message(text=text, blocks=[section(text)])


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def header(text: str) -> Block:
    return {"type": "header", "text": {"type": "plain_text", "text": _clip(text, MAX_HEADER)}}


def section(text: str) -> Block:
    """A mrkdwn section. Callers keep text under 3,000 chars (see code_blocks for long text)."""
    if len(text) > MAX_SECTION_TEXT:
        raise ValueError(f"section text is {len(text)} chars; Slack allows {MAX_SECTION_TEXT}")
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def fields(pairs: list[tuple[str, str]]) -> Block:
    """Up to ten label/value fields shown in two columns."""
    return {
        "type": "section",
        "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in pairs[:10]],
    }


def context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(text, MAX_SECTION_TEXT)}]}


def divider() -> Block:
    return {"type": "divider"}


def _chunks(text: str, budget: int) -> list[str]:
    """Text split on line boundaries into pieces of at most `budget` chars (a longer line is clipped)."""
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for line in text.splitlines() or [""]:
        line = _clip(line, budget)
        if current and size + len(line) + 1 > budget:
            chunks.append("\n".join(current))
            current, size = [], 0
        current.append(line)
        size += len(line) + 1
    chunks.append("\n".join(current))
    return chunks


def code_blocks(text: str) -> list[Block]:
    """Preformatted text split on line boundaries into sections that fit Slack's limit."""
    return [section(f"```{chunk}```") for chunk in _chunks(text, MAX_SECTION_TEXT - len("``````"))]


def sections(text: str) -> list[Block]:
    """mrkdwn text split on line boundaries into sections that fit Slack's limit."""
    return [section(chunk) for chunk in _chunks(text, MAX_SECTION_TEXT)]


def button(
    label: str,
    action: str,
    value: str = "",
    style: Literal["primary", "danger"] | None = None,
    confirm: tuple[str, str] | None = None,
) -> Block:
    """A button whose press is routed to the handler action `action`.

    `confirm` is (title, text) for Slack's native "are you sure?" dialog.
    """
    el: Block = {
        "type": "button",
        "action_id": ACTION_PREFIX + action,
        "text": {"type": "plain_text", "text": _clip(label, MAX_BUTTON_LABEL)},
        "value": value,
    }
    if style:
        el["style"] = style
    if confirm:
        title, body = confirm
        el["confirm"] = {
            "title": {"type": "plain_text", "text": _clip(title, 100)},
            "text": {"type": "mrkdwn", "text": _clip(body, 300)},
            "confirm": {"type": "plain_text", "text": _clip(label, 30)},
            "deny": {"type": "plain_text", "text": "Cancel"},
            **({"style": style} if style else {}),
        }
    return el


def actions(*buttons: Block, block_id: str | None = None) -> Block:
    block: Block = {"type": "actions", "elements": list(buttons)[:25]}
    if block_id:
        block["block_id"] = block_id
    return block


def mention(user: str) -> str:
    """A Slack user mention for Slack IDs; other users (the terminal) by name."""
    return f"<@{user}>" if user[:1] in ("U", "W") and user[1:].isalnum() and user.isupper() else user
