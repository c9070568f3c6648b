"""Slack's own rules for what the fake Slack accepts, checked the way Slack would judge a payload.

Two layers:

* slack_sdk's models: every block is parsed with ``Block.parse`` and every object in it (blocks,
  elements, text and confirm objects) passes ``validate_json()``; an unknown block/element type
  or a key the model does not know is refused, as Slack refuses it ("when unsure, refuse").
* The documented rules the SDK does not check:
  - ``action_id`` unique within a block and within the whole message or view; ``block_id``
    unique within a message or view (https://docs.slack.dev/reference/block-kit/blocks/actions-block,
    https://docs.slack.dev/reference/block-kit/block-elements/button-element: "Should be unique
    among all other action_ids in the containing block"; block_id: "Should be unique for each
    message and each iteration of a message");
  - at most 50 blocks in a message, 100 in a view (https://docs.slack.dev/reference/block-kit/blocks);
  - text lengths per Block Kit: section text 3000, each section field 2000, header 150,
    button text 75 / value 2000 / url 3000, confirm title 100 / text 300 / buttons 30;
  - a top-level ``text`` with ``blocks``: Slack only warns without it (the notification and
    screen readers then have nothing); the fake refuses it with ``no_text``.
  - a response_url takes at most 5 messages, within 30 minutes of the command or click that
    brought it (Slack's docs on slash commands, "delayed responses": up to 5 times within 30
    minutes); the fake answers a sixth with HTTP 404 ``used_url`` and a late one with ``expired_url``.

A violation is Slack's error answer: ``invalid_blocks`` with ``errors`` naming a JSON pointer
(``"... [json-pointer:/blocks/0/text/text]"``, as Slack words them), ``invalid_arguments``,
``channel_not_found`` or ``no_text``.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.basic_objects import JsonObject
from slack_sdk.models.blocks import Block

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
RESPONSE_URL_USES = 5
RESPONSE_URL_TTL = 30 * 60  # seconds
RESPONSE_URL_LIMIT = (
    f"a response_url takes {RESPONSE_URL_USES} messages within {RESPONSE_URL_TTL // 60} minutes"
)

# Lengths Slack documents per Block Kit object, by (object type, key); checked on top of slack_sdk's
# validators (which miss some nested ones, e.g. a section field or a confirm dialog's parts).
_TEXT_LIMITS: dict[tuple[str, str], int] = {
    ("section", "text"): 3000,
    ("section", "fields"): 2000,
    ("header", "text"): 150,
    ("button", "text"): 75,
    ("button", "value"): 2000,
    ("button", "url"): 3000,
    ("button", "action_id"): 255,
    ("confirm", "title"): 100,
    ("confirm", "text"): 300,
    ("confirm", "confirm"): 30,
    ("confirm", "deny"): 30,
    ("*", "block_id"): 255,
}

# Text objects that must be plain_text (https://docs.slack.dev/reference/block-kit/blocks/header-block,
# .../block-elements/button-element, .../composition-objects/confirmation-dialog-object).
_PLAIN_ONLY = {
    ("header", "text"),
    ("button", "text"),
    ("confirm", "title"),
    ("confirm", "confirm"),
    ("confirm", "deny"),
}

#: A Slack conversation ID (public C…, private G…, direct message D…).
CONVERSATION_ID = re.compile(r"[CGD][A-Z0-9]{2,}")
#: A user ID (chat.postMessage to a user ID posts in the app's direct message with them).
USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")


@dataclass(frozen=True)
class Violation:
    """One broken rule: Slack's ``error`` code and what a Slack error line would say."""

    error: str
    detail: str
    method: str = ""
    expected: bool = False

    def __str__(self) -> str:
        return f"{self.method}: {self.error}: {self.detail}"


def _text(value: Any) -> str | None:
    if isinstance(value, dict):
        text = value.get("text")
        return text if isinstance(text, str) else None
    return value if isinstance(value, str) else None


def _limits(kind: str, obj: dict[str, Any], pointer: str) -> list[str]:
    errors = [
        f"must be a plain_text object [json-pointer:{pointer}/{key}]"
        for owner, key in _PLAIN_ONLY
        if owner == kind and isinstance(obj.get(key), dict) and obj[key].get("type") != "plain_text"
    ]
    for (owner, key), limit in _TEXT_LIMITS.items():
        if owner not in (kind, "*") or key not in obj:
            continue
        values = obj[key] if isinstance(obj[key], list) else [obj[key]]
        for i, value in enumerate(values):
            text = _text(value)
            if text is not None and len(text) > limit:
                where = f"{pointer}/{key}" + (f"/{i}" if isinstance(obj[key], list) else "")
                errors.append(f"must be less than {limit + 1} characters [json-pointer:{where}]")
    return errors


def _walk(raw: Any, model: Any, pointer: str, errors: list[str]) -> None:
    """Validate ``model`` (parsed from ``raw``) and everything in it; report unknown keys."""
    if isinstance(raw, list):
        if not isinstance(model, list | tuple) or len(model) != len(raw):
            errors.append(f"invalid list [json-pointer:{pointer}]")
            return
        for i, (r, m) in enumerate(zip(raw, model, strict=True)):
            _walk(r, m, f"{pointer}/{i}", errors)
        return
    if not isinstance(model, JsonObject):
        return
    if not isinstance(raw, dict):
        errors.append(f"expected an object [json-pointer:{pointer}]")
        return
    try:
        model.validate_json()
    except SlackObjectFormationError as error:
        errors.append(f"{error} [json-pointer:{pointer}]")
    kind = str(raw.get("type") or ("confirm" if "deny" in raw or "confirm" in raw else ""))
    errors.extend(_limits(kind, raw, pointer))
    known = set(model.attributes)
    if not known:  # ConfirmObject & co. keep their parts privately: their validators cover them
        return
    for key, value in raw.items():
        if key not in known:
            errors.append(f"unknown property '{key}' [json-pointer:{pointer}/{key}]")
            continue
        _walk(value, getattr(model, key, None), f"{pointer}/{key}", errors)


def block_errors(blocks: Any, *, max_blocks: int, root: str = "/blocks") -> list[str]:
    """Slack's error lines for ``blocks`` (empty when Slack would accept them)."""
    if blocks is None:
        return []
    if not isinstance(blocks, list):
        return [f"must be an array [json-pointer:{root}]"]
    errors: list[str] = []
    if len(blocks) > max_blocks:
        errors.append(f"no more than {max_blocks} items allowed [json-pointer:{root}]")
    block_ids: dict[str, int] = {}
    action_ids: dict[str, str] = {}
    for i, raw in enumerate(blocks):
        pointer = f"{root}/{i}"
        if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
            errors.append(f"missing required field: type [json-pointer:{pointer}]")
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                model = Block.parse(raw)
            except (SlackObjectFormationError, TypeError, ValueError, AttributeError, KeyError) as error:
                errors.append(f"{error} [json-pointer:{pointer}]")
                continue
        if model is None or type(model) is Block:
            errors.append(f"unsupported type: {raw['type']} [json-pointer:{pointer}/type]")
            continue
        _walk(raw, model, pointer, errors)
        block_id = raw.get("block_id")
        if isinstance(block_id, str):
            if block_id in block_ids:
                errors.append(f"duplicate block_id '{block_id}' [json-pointer:{pointer}/block_id]")
            block_ids.setdefault(block_id, i)
        elements = [raw["accessory"]] if isinstance(raw.get("accessory"), dict) else []
        if isinstance(raw.get("elements"), list):
            elements += [e for e in raw["elements"] if isinstance(e, dict)]
        in_block: set[str] = set()
        for j, element in enumerate(elements):
            action_id = element.get("action_id")
            if not isinstance(action_id, str):
                continue
            where = f"{pointer}/accessory" if "accessory" in raw and j == 0 else f"{pointer}/elements/{j}"
            if action_id in in_block:
                errors.append(f"duplicate action_id '{action_id}' in block [json-pointer:{where}/action_id]")
            elif action_id in action_ids:
                errors.append(
                    f"duplicate action_id '{action_id}' (also at {action_ids[action_id]})"
                    f" [json-pointer:{where}/action_id]"
                )
            in_block.add(action_id)
            action_ids.setdefault(action_id, where)
    return errors


def message_errors(body: dict[str, Any], *, require_text: bool = True) -> list[tuple[str, str]]:
    """(error, detail) pairs for a message body: chat.* arguments or a response_url body."""
    out: list[tuple[str, str]] = []
    blocks = body.get("blocks")
    if blocks not in (None, "", []):
        out += [("invalid_blocks", e) for e in block_errors(blocks, max_blocks=MAX_MESSAGE_BLOCKS)]
        if require_text and not str(body.get("text") or "").strip():
            out.append(("no_text", "blocks without a text fallback (notifications, screen readers)"))
    attachments = body.get("attachments")
    if attachments not in (None, "", []):
        out.append(("invalid_attachments", "the bot sends no attachments; the fake does not check them"))
    return out


def is_conversation_id(value: Any) -> bool:
    return isinstance(value, str) and CONVERSATION_ID.fullmatch(value) is not None


def is_user_id(value: Any) -> bool:
    return isinstance(value, str) and USER_ID.fullmatch(value) is not None
