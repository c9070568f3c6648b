"""Slack channels as users give them (`--channel`), and as replies show them.

IDs are C (channel), G (private, older workspaces) or D (direct message) then upper-case letters
and digits; names are lower-case. The two never overlap, so a bare lower-case word is a name.
"""

from __future__ import annotations

import re

from bot.core.commands import UsageError
from bot.render.formatting import ellipsis
from bot.render.mrkdwn import live

_ID = r"[CGD][A-Z0-9]{2,20}"
_CHANNEL_ID = re.compile(_ID)
_CHANNEL_MENTION = re.compile(rf"<#({_ID})(?:\|[^>]*)?>")  # a #channel picked in Slack arrives so
_CHANNEL_NAME = re.compile(r"#?([a-z0-9][a-z0-9._-]{0,79})")


def parse_channel(text: str) -> str:
    """`<#C123|ops>` or `<#C123>` -> C123; `C123` as it is. A name (`#ops`) is refused.

    Schedules keep the channel's ID: files.completeUploadExternal takes only an ID (its
    `channel_id`), and a name stops working when the channel is renamed. With the manifest's
    `should_escape: false` Slack sends a #channel as typed, and resolving a name would need
    conversations.list and the channels:read scope; `should_escape: true` would also turn
    registry hosts (`registry.example.com/app`) into links. So a name gets a clear refusal."""
    text = text.strip()
    if match := _CHANNEL_MENTION.fullmatch(text):
        return match.group(1)
    if _CHANNEL_ID.fullmatch(text):
        return text
    if match := _CHANNEL_NAME.fullmatch(text):
        raise UsageError(
            f"`--channel` needs the channel's ID, not its name `#{match.group(1)}`: leave `--channel` out"
            " to use this channel, or give the ID (channel details → About, at the bottom: C0123ABCD)"
        )
    raise UsageError(f"`{ellipsis(text, 80)}` is not a channel: give a channel ID such as C0123ABCD")


def channel_text(channel: str) -> str:
    """How a reply names a channel: an ID as a Slack mention (`<#C123>`), a name as it is."""
    return live(f"<#{channel}>") if _CHANNEL_ID.fullmatch(channel) else channel


def member_hint(channel: str) -> str:
    """Scheduled posts use chat.postMessage, which needs the bot in the channel (no chat:write.public)."""
    if _CHANNEL_ID.fullmatch(channel) or channel.startswith("#"):  # "#name": schedules stored before IDs
        return f" The bot must be a member of {channel_text(channel)}: `/invite @dockerbot` there."
    return ""
