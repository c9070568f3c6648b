"""Slack channels as users type them (`--channel`), and as replies show them.

IDs are C (channel), G (private, older workspaces) or D (direct message) then upper-case letters
and digits; names are lower-case. The two never overlap, so a bare lower-case word is a name.
"""

from __future__ import annotations

import re

from bot.core.commands import UsageError
from bot.render.formatting import ellipsis

_ID = r"[CGD][A-Z0-9]{2,20}"
_CHANNEL_ID = re.compile(_ID)
_CHANNEL_MENTION = re.compile(rf"<#({_ID})(?:\|[^>]*)?>")  # a #channel picked in Slack arrives so
_CHANNEL_NAME = re.compile(r"#?([a-z0-9][a-z0-9._-]{0,79})")


def parse_channel(text: str) -> str:
    """`<#C123|ops>` or `<#C123>` -> C123; `C123` as it is; `#ops` or `ops` -> `#ops`
    (chat.postMessage accepts a name)."""
    text = text.strip()
    if match := _CHANNEL_MENTION.fullmatch(text):
        return match.group(1)
    if _CHANNEL_ID.fullmatch(text):
        return text
    if match := _CHANNEL_NAME.fullmatch(text):
        return "#" + match.group(1)
    raise UsageError(
        f"`{ellipsis(text, 80)}` is not a channel: use #name, a channel ID such as C0123ABCD, or a #mention"
    )


def channel_text(channel: str) -> str:
    """How a reply names a channel: an ID as a Slack mention (`<#C123>`), a name as it is."""
    return f"<#{channel}>" if _CHANNEL_ID.fullmatch(channel) else channel


def member_hint(channel: str) -> str:
    """Scheduled posts use chat.postMessage, which needs the bot in the channel (no chat:write.public)."""
    if _CHANNEL_ID.fullmatch(channel) or channel.startswith("#"):
        return f" The bot must be a member of {channel_text(channel)}: `/invite @dockerbot` there."
    return ""
