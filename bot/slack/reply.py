"""Answering in Slack: a command's reply channel (response_url, chat.postMessage/update, files) and
the poster scheduled results use."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from bot import metrics
from bot.render.messages import Message, context, slack_text
from bot.slack.client import count_api_error, retry_handlers
from bot.slack.limits import fit

log = logging.getLogger("dockerbot.slack")

# files.completeUploadExternal takes only a conversation ID as channel_id.
_CONVERSATION_ID = re.compile(r"[CGD][A-Z0-9]{2,}")

# chat.postMessage fails with these where the bot is not a member; response_url still works there.
_NOT_POSTABLE = {"not_in_channel", "channel_not_found", "is_archived", "restricted_action"}


@dataclass(frozen=True)
class SlackRef:
    """A message we can edit: by channel+ts (chat.update) or by an interaction's response_url."""

    channel: str
    ts: str | None = None
    response_url: str | None = None


def _payload(message: Message) -> dict[str, Any]:
    return {"text": slack_text(message), "blocks": fit(message).blocks}


class SlackReply:
    def __init__(
        self,
        client: WebClient,
        *,
        channel: str,
        user: str,
        response_url: str | None,
        on_live: Callable[[SlackRef], None] | None = None,
    ) -> None:
        self.client = client
        self.channel = channel
        self.user = user
        self.response_url = response_url
        self.on_live = on_live  # told of each message posted to be updated (a pull's progress)

    # --- Reply -------------------------------------------------------------------------------
    def send(self, message: Message, *, live: bool = False) -> SlackRef:
        message = self._with_files(message)
        if live:
            try:
                resp = self.client.chat_postMessage(channel=self.channel, **_payload(message))
                ref = SlackRef(channel=resp["channel"], ts=resp["ts"])
                if self.on_live is not None:
                    self.on_live(ref)
                return ref
            except SlackApiError as error:
                if error.response.get("error") not in _NOT_POSTABLE:
                    raise
                log.info("cannot post in %s (%s); answering through response_url", self.channel, error)
        self._respond(message, replace_original=False)
        # A command's own response_url cannot edit its ephemeral reply: updates are kept for the end.
        return SlackRef(channel=self.channel)

    def update(self, ref: SlackRef, message: Message, *, final: bool = False) -> None:  # type: ignore[override]
        message = self._with_files(message)
        if ref.response_url:
            self._respond(message, replace_original=True, url=ref.response_url)
        elif ref.ts:
            self.client.chat_update(channel=ref.channel, ts=ref.ts, **_payload(message))
        elif final:
            self._respond(message, replace_original=False)

    def private(self, message: Message) -> None:
        message = replace(message, in_channel=False)
        if self.response_url:
            self._respond(message, replace_original=False)
        else:
            self.client.chat_postEphemeral(channel=self.channel, user=self.user, **_payload(message))

    # --- helpers -----------------------------------------------------------------------------
    def _respond(self, message: Message, *, replace_original: bool, url: str | None = None) -> None:
        target = url or self.response_url
        if not target:  # scheduled jobs have no response_url: post to the channel
            self.client.chat_postMessage(channel=self.channel, **_payload(message))
            return
        webhook = WebhookClient(url=target, retry_handlers=retry_handlers())
        resp = webhook.send(
            **_payload(message),
            response_type="in_channel" if message.in_channel else "ephemeral",
            replace_original=replace_original,
        )
        if resp.status_code != 200:
            metrics.SLACK_API_ERRORS.labels("response_url").inc()
            log.warning("response_url answered %s: %s", resp.status_code, resp.body[:200])

    def _with_files(self, message: Message) -> Message:
        """Upload attached files once; the message then says where they are.

        A private reply's files go to the requester's direct messages: uploading them to the
        channel would show everyone what only they were meant to see."""
        if not message.files:
            return message
        notes = []
        for file in message.files:
            try:
                if message.in_channel or not self.user:
                    target, where = self.channel, "attached"
                    if not _CONVERSATION_ID.fullmatch(target):  # a schedule stored with a #name
                        why = f"files need the channel's ID, not {target}"
                        notes.append(f"Could not attach `{file.name}`: {why}.")
                        continue
                else:
                    target = self.client.conversations_open(users=self.user)["channel"]["id"]
                    where = "sent to you in a direct message"
                self.client.files_upload_v2(
                    channel=target, content=file.content, filename=file.name, title=file.title or file.name
                )
                notes.append(f"Full output {where} as `{file.name}`.")
            except SlackApiError as error:
                count_api_error(error)
                notes.append(f"Could not attach `{file.name}` ({error.response.get('error')}).")
            except Exception as error:  # noqa: BLE001 - the upload URL failing, a timeout: the message still goes
                log.warning("could not attach %s: %r", file.name, error)
                notes.append(f"Could not attach `{file.name}` (the upload failed).")
        return Message(
            text=message.text,
            blocks=[*message.blocks, context(" ".join(notes))],
            in_channel=message.in_channel,
            keep=message.keep,
        )


class SlackPoster:
    """Posts scheduled results to a channel (chat.postMessage; files with files upload v2)."""

    def __init__(self, client: WebClient) -> None:
        self.client = client

    def post(self, channel: str, message: Message) -> None:
        try:
            SlackReply(self.client, channel=channel, user="", response_url=None).send(message)
        except SlackApiError as error:
            count_api_error(error)
            raise
