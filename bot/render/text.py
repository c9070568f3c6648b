"""Block Kit → plain text, for the terminal adapter (and for reading messages in tests)."""

from __future__ import annotations

import re

from bot.render import mrkdwn
from bot.render.messages import Block, Message

_CODE_FENCE = re.compile(r"```(.*?)```", re.S)
_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_BOLD = re.compile(r"(?<![\w*])\*(\S(?:[^*\n]*\S)?)\*(?![\w*])")
_LINK = re.compile(r"<(https?://[^|>]+)\|([^>]+)>")
_BOLD_CODE = re.compile(r"\*(`[^`\n]+`)\*")


def mrkdwn_to_text(text: str) -> str:
    """Drop Slack's markup but keep what is inside code exactly as it is."""
    out: list[str] = []
    pos = 0
    for fence in _CODE_FENCE.finditer(text):
        out.append(_inline(text[pos : fence.start()]))
        out.append(mrkdwn.unescape(fence.group(1)))
        pos = fence.end()
    out.append(_inline(text[pos:]))
    return "".join(out)


def _inline(text: str) -> str:
    # Only the bot's own links are still `<…>` here: the builders escaped all other text
    # (bot.render.mrkdwn), which the terminal then shows as it was typed.
    parts = _INLINE_CODE.split(_BOLD_CODE.sub(r"\1", text))  # odd indexes are code spans
    for i in range(len(parts)):
        if i % 2 == 0:
            parts[i] = _LINK.sub(r"\2 (\1)", _BOLD.sub(r"\1", parts[i]))
        parts[i] = mrkdwn.unescape(parts[i])
    return "".join(parts)


def _text_of(obj: dict) -> str:
    if obj.get("type") == "mrkdwn":
        return mrkdwn_to_text(obj.get("text", ""))
    return mrkdwn.plain(obj.get("text", ""))


def render_block(block: Block) -> str:
    kind = block.get("type")
    if kind == "header":
        title = block["text"]["text"]
        return f"{title}\n{'=' * len(title)}"
    if kind == "section":
        lines = [_text_of(block["text"])] if "text" in block else []
        lines += [_text_of(f).replace("\n", ": ", 1) for f in block.get("fields", [])]
        if "accessory" in block and block["accessory"].get("type") == "button":
            lines.append(render_button(block["accessory"]))
        return "\n".join(lines)
    if kind == "context":
        return "  ".join(_text_of(el) for el in block.get("elements", []) if "text" in el)
    if kind == "divider":
        return "-" * 40
    if kind == "actions":
        return " ".join(render_button(el) for el in block.get("elements", []) if el.get("type") == "button")
    if kind == "image":
        return f"[image: {block.get('alt_text', '')}]"
    return ""


def render_button(el: Block) -> str:
    return f"[{el['text']['text']}]"


def render(message: Message) -> str:
    if not message.blocks:
        return mrkdwn.plain(message.text)
    return "\n".join(part for part in (render_block(b) for b in message.blocks) if part)
