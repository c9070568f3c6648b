"""Transport-free messages: Block Kit blocks plus fallback text.

Handlers build messages with these helpers and never import Slack; the Slack
adapter sends the blocks as they are, the terminal adapter renders them as text.

Handlers pass plain text: every builder escapes it for mrkdwn (`bot.render.mrkdwn`), so text from
outside the bot (image labels, engine errors, what the user typed) never becomes a mention or a
link. A `Message.text` stays plain; the Slack adapter escapes it (`slack_text`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from bot.render import mrkdwn

Block = dict[str, Any]

# Slack's limits (Block Kit reference: https://docs.slack.dev/reference/block-kit/blocks).
MAX_SECTION_TEXT = 3000
MAX_BUTTON_LABEL = 75
MAX_HEADER = 150

ACTION_PREFIX = "dockerbot:"
ACTION_KEY = "#"  # what follows it in an action_id only makes the id unique


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


MAX_FIELD_TEXT = 2000


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _plain_text(text: str, limit: int) -> Block:
    return {"type": "plain_text", "text": _clip(mrkdwn.plain(text), limit)}


def _mrkdwn(text: str, limit: int) -> Block:
    return {"type": "mrkdwn", "text": mrkdwn.clip_escaped(mrkdwn.escape(text), limit)}


def slack_text(message: Message) -> str:
    """A message's fallback text as Slack must get it (escaped like the blocks)."""
    return mrkdwn.escape(message.text)


def header(text: str) -> Block:
    return {"type": "header", "text": _plain_text(text, MAX_HEADER)}


def section(text: str) -> Block:
    """A mrkdwn section of plain `text` (escaped here). Callers keep text under 3,000 chars (see
    code_blocks for long text); what escaping adds beyond that is clipped."""
    if len(text) > MAX_SECTION_TEXT:
        raise ValueError(f"section text is {len(text)} chars; Slack allows {MAX_SECTION_TEXT}")
    return {"type": "section", "text": _mrkdwn(text, MAX_SECTION_TEXT)}


def fields(pairs: list[tuple[str, str]]) -> Block:
    """Up to ten label/value fields shown in two columns."""
    return {
        "type": "section",
        "fields": [_mrkdwn(f"*{k}*\n{v}", MAX_FIELD_TEXT) for k, v in pairs[:10]],
    }


def context(text: str) -> Block:
    return {"type": "context", "elements": [_mrkdwn(text, MAX_SECTION_TEXT)]}


def divider() -> Block:
    return {"type": "divider"}


def _chunks(text: str, budget: int) -> list[str]:
    """Text split on line boundaries into pieces of at most `budget` chars once escaped (a longer
    line is clipped)."""
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for line in text.splitlines() or [""]:
        line = mrkdwn.clip_plain(line, budget)
        width = mrkdwn.slack_len(line)
        if current and size + width + 1 > budget:
            chunks.append("\n".join(current))
            current, size = [], 0
        current.append(line)
        size += width + 1
    chunks.append("\n".join(current))
    return chunks


def code_blocks(text: str) -> list[Block]:
    """Preformatted text split on line boundaries into sections that fit Slack's limit."""
    return [section(mrkdwn.code(chunk)) for chunk in _chunks(text, MAX_SECTION_TEXT - len("``````"))]


def sections(text: str) -> list[Block]:
    """mrkdwn text split on line boundaries into sections that fit Slack's limit."""
    return [section(chunk) for chunk in _chunks(text, MAX_SECTION_TEXT)]


def button(
    label: str,
    action: str,
    value: str = "",
    style: Literal["primary", "danger"] | None = None,
    confirm: tuple[str, str] | None = None,
    key: str | None = None,
) -> Block:
    """A button whose press is routed to the handler action `action`.

    `confirm` is (title, text) for Slack's native "are you sure?" dialog. Slack wants every
    action_id of a message unique: buttons of one action in one message each need their own
    `key` (the action_id becomes `dockerbot:ACTION#KEY`; the router ignores the key).
    """
    el: Block = {
        "type": "button",
        "action_id": ACTION_PREFIX + action + (f"{ACTION_KEY}{key}" if key is not None else ""),
        "text": _plain_text(label, MAX_BUTTON_LABEL),
        "value": value,
    }
    if style:
        el["style"] = style
    if confirm:
        title, body = confirm
        el["confirm"] = {
            "title": _plain_text(title, 100),
            "text": _mrkdwn(body, 300),
            "confirm": _plain_text(label, 30),
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
    """A Slack user mention for Slack IDs (live: the bot means it); other users (the terminal) by name."""
    if user[:1] in ("U", "W") and user[1:].isalnum() and user.isupper():
        return mrkdwn.live(f"<@{user}>")
    return user


def with_context(message: Message, note: str) -> Message:
    """`message` with a context line added below it (a text-only message stays text-only)."""
    return replace(message, blocks=[*message.blocks, context(note)] if message.blocks else [])
