"""Escaping for Slack's mrkdwn, in one place.

Slack reads `<…>` in any mrkdwn text (and in a message's `text` fallback) as a control sequence:
`<!channel>`, `<@U123>`, `<#C123>`, `<https://x|label>`. Its docs ask apps to escape exactly
`&`, `<` and `>` as `&amp;`, `&lt;`, `&gt;` in text they did not mean as markup
(https://docs.slack.dev/messaging/formatting-message-text#escaping).

Handlers write plain text: image names, labels, engine errors, command text as they are. The block
builders in `bot.render.messages` escape all of it with `escape`, and the Slack adapter escapes a
message's fallback text with it. The only markup that survives is what the bot marks with `live`
(the requester's mention, a channel it resolved): the mark carries a key chosen per process, so
text from outside cannot forge one. The terminal shows the plain text (`plain`).

Code blocks: a stray ``` inside would end the block; `code` keeps it from doing so.
"""

from __future__ import annotations

import re
import secrets

_OPEN = f"\ue000{secrets.token_hex(8)}\ue001"
_CLOSE = "\ue002"
_LIVE = re.compile(re.escape(_OPEN) + r"(.*?)" + re.escape(_CLOSE), re.S)
_FENCE = "```"
_BROKEN_FENCE = "`\u200b`\u200b`"  # zero-width spaces: looks like ``` but does not end a block
_PARTIAL_TAIL = re.compile(r"(&[a-z]{0,3}|<[^>]*)$")  # an entity or token cut in half
_CHANGED_BY_ESCAPE = re.compile("[&<>`" + re.escape(_OPEN[0]) + "]")  # entities, fences, live marks


def live(token: str) -> str:
    """Markup the bot means (`<@U123>`, `<#C123>`): `escape` leaves it live."""
    return f"{_OPEN}{token}{_CLOSE}"


def _escape_plain(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape(text: str) -> str:
    """mrkdwn for Slack: everything escaped except the bot's own `live` markup."""
    out: list[str] = []
    pos = 0
    for match in _LIVE.finditer(text):
        out.append(_escape_plain(text[pos : match.start()]))
        out.append(match.group(1))
        pos = match.end()
    out.append(_escape_plain(text[pos:]))
    return "".join(out)


def plain(text: str) -> str:
    """The text as people read it (the terminal, a plain_text object): marks dropped."""
    return _LIVE.sub(r"\1", text)


def unescape(text: str) -> str:
    """Back from `escape` (for the terminal): entities and broken fences as they were typed."""
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return text.replace(_BROKEN_FENCE, _FENCE)


def slack_len(text: str) -> int:
    """Characters the text takes once escaped (and, inside `code`, its fences broken): what
    Slack's length limits count."""
    if not _CHANGED_BY_ESCAPE.search(text):  # nothing to escape: the common case, without a copy
        return len(text)
    return len(escape(text)) + (len(_BROKEN_FENCE) - len(_FENCE)) * text.count(_FENCE)


_WIDTH = {"&": 5, "<": 4, ">": 4}


def clip_plain(text: str, limit: int) -> str:
    """The longest start of `text` (ending in "…" if cut) whose `slack_len` is at most `limit`."""
    if slack_len(text) <= limit:
        return text
    used = 1 + len(_BROKEN_FENCE)  # the "…", and room for a fence broken at the cut
    for i, char in enumerate(text):
        used += _WIDTH.get(char, 1)
        if used > limit:
            return text[:i] + "…"
    return text


def code(text: str) -> str:
    """A code block that nothing inside can end early."""
    return f"{_FENCE}{text.replace(_FENCE, _BROKEN_FENCE)}{_FENCE}"


def clip_escaped(escaped: str, limit: int) -> str:
    """Escaped mrkdwn cut to `limit` characters with "…", without cutting an entity or token in half;
    a code block keeps its closing fence."""
    if len(escaped) <= limit:
        return escaped
    fenced = escaped.endswith(_FENCE) and escaped.startswith(_FENCE) and len(escaped) > 6
    room = limit - 1 - (len(_FENCE) if fenced else 0)
    cut = _PARTIAL_TAIL.sub("", escaped[:room])
    return cut + "…" + (_FENCE if fenced else "")
