"""The Slack adapter: a Bolt app (built by `create_app`, never at import time) and its reply channel.

Every command and button press is acknowledged at once and handed to a `Dispatch`: a worker pool
sized for slow Docker calls, in this process (`LocalDispatch`) or in a worker process of its own
(`bot.worker`), which answers through response_url or chat.postMessage/chat.update.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Protocol

from slack_bolt import App, BoltResponse
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import RetryHandler
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.webhook import WebhookClient

from bot import metrics
from bot.config import Settings
from bot.home import publish_home
from bot.messages import ACTION_PREFIX, Message, context
from bot.metrics import CountingRetries
from bot.router import Router

log = logging.getLogger("dockerbot.slack")

# chat.postMessage fails with these where the bot is not a member; response_url still works there.
_NOT_POSTABLE = {"not_in_channel", "channel_not_found", "is_archived", "restricted_action"}


def retry_handlers() -> list[RetryHandler]:
    # slack-sdk retries only connection errors by default; 429 (Retry-After) and 5xx are opt-in.
    return [
        CountingRetries(ConnectionErrorRetryHandler(max_retry_count=2), "connection"),
        CountingRetries(RateLimitErrorRetryHandler(max_retry_count=5), "ratelimited"),
        CountingRetries(ServerErrorRetryHandler(max_retry_count=3), "server_error"),
    ]


def make_web_client(settings: Settings) -> WebClient:
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    base_url = settings.slack_api_url or WebClient.BASE_URL
    return WebClient(token=token, base_url=base_url.rstrip("/") + "/", retry_handlers=retry_handlers())


@dataclass(frozen=True)
class SlackRef:
    """A message we can edit: by channel+ts (chat.update) or by an interaction's response_url."""

    channel: str
    ts: str | None = None
    response_url: str | None = None


def count_api_error(error: SlackApiError) -> None:
    """Count a failed Web API call by method (the last part of its URL: a bounded set)."""
    method = str(getattr(error.response, "api_url", "") or "").rstrip("/").rsplit("/", 1)[-1] or "unknown"
    metrics.SLACK_API_ERRORS.labels(method).inc()


def _payload(message: Message) -> dict[str, Any]:
    return {"text": message.text, "blocks": message.blocks}


class SlackReply:
    def __init__(self, client: WebClient, *, channel: str, user: str, response_url: str | None) -> None:
        self.client = client
        self.channel = channel
        self.user = user
        self.response_url = response_url

    # --- Reply -------------------------------------------------------------------------------
    def send(self, message: Message, *, live: bool = False) -> SlackRef:
        message = self._with_files(message)
        if live:
            try:
                resp = self.client.chat_postMessage(channel=self.channel, **_payload(message))
                return SlackRef(channel=resp["channel"], ts=resp["ts"])
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
        return Message(
            text=message.text,
            blocks=[*message.blocks[:49], context(" ".join(notes))],
            in_channel=message.in_channel,
        )


class RecentKeys:
    """A bounded set of recently seen keys (thread-safe)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, key: str) -> bool:
        """True if the key is new."""
        with self._lock:
            if key in self._keys:
                return False
            self._keys[key] = None
            if len(self._keys) > self.size:
                self._keys.popitem(last=False)
            return True


def delivery_key(body: dict[str, Any]) -> str | None:
    """What identifies one user action across Slack's redeliveries."""
    if body.get("event_id"):
        return f"event:{body['event_id']}"
    actions = body.get("actions") or []
    if actions and body.get("trigger_id"):
        return f"action:{body['trigger_id']}:{actions[0].get('action_ts', '')}"
    if body.get("command") and body.get("trigger_id"):
        return f"command:{body['trigger_id']}"
    return None


class Dispatch(Protocol):
    """Where acknowledged requests go (Slack's request bodies, as Bolt parsed them)."""

    def command(self, body: dict[str, Any]) -> None: ...

    def button(self, body: dict[str, Any]) -> None: ...

    def home_opened(self, user: str) -> None: ...


class LocalDispatch:
    """Runs acknowledged requests on a thread pool in this process, answering through `client`."""

    def __init__(self, router: Router, client: WebClient, work: ThreadPoolExecutor) -> None:
        self.router = router
        self.client = client
        self.work = work
        # Roles granted to user groups: members come from Slack, refreshed in the background.
        groups = router.services.access.groups
        groups.fetch = lambda group: client.usergroups_users_list(usergroup=group)["users"]
        groups.start()

    # `done`, if given, is called when the work has finished, however it ended.
    def command(self, body: dict[str, Any], done: Callable[[], None] | None = None) -> None:
        user, channel = body.get("user_id", ""), body.get("channel_id", "")
        reply = SlackReply(self.client, channel=channel, user=user, response_url=body.get("response_url"))
        work = partial(self.router.handle, body.get("text", ""), user=user, channel=channel, reply=reply)
        self._submit(work, done)

    def button(self, body: dict[str, Any], done: Callable[[], None] | None = None) -> None:
        action = body["actions"][0]
        user = body.get("user", {}).get("id", "")
        container = body.get("container") or {}
        channel = (body.get("channel") or {}).get("id") or container.get("channel_id", "")
        response_url = body.get("response_url")
        ref = SlackRef(channel=channel, ts=container.get("message_ts"), response_url=response_url)
        reply = SlackReply(self.client, channel=channel, user=user, response_url=response_url)
        work = partial(
            self.router.press,
            action["action_id"],
            action.get("value", ""),
            user=user,
            channel=channel,
            message=ref,
            reply=reply,
        )
        self._submit(work, done)

    def home_opened(self, user: str, done: Callable[[], None] | None = None) -> None:
        self._submit(partial(publish_home, self.client, self.router.services, user), done)

    def _submit(self, work: Callable[[], Any], done: Callable[[], None] | None) -> None:
        def guarded() -> None:
            try:
                work()
            except Exception as error:  # a failing reply must not kill the worker silently
                if isinstance(error, SlackApiError):
                    count_api_error(error)
                log.exception("could not deliver a reply to Slack")
            finally:
                if done is not None:
                    done()

        self.work.submit(guarded)


def create_app(settings: Settings, dispatch: Dispatch, *, client: WebClient | None = None) -> App:
    client = client or make_web_client(settings)
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else ""
    app = App(
        client=client,
        signing_secret=secret,
        # auth.test is called lazily on the first request, so building the app needs no network.
        token_verification_enabled=False,
        # Our listeners only ack and hand the work to `dispatch`, so they run in the request's own
        # thread: no hand-off to Bolt's executor, no polling for the ack (up to 10 ms each time).
        process_before_response=True,
        listener_executor=ThreadPoolExecutor(max_workers=16, thread_name_prefix="bolt"),
    )
    seen = RecentKeys(4096)

    @app.use
    def first_look(context: Any, body: dict[str, Any], next: Any) -> BoltResponse | None:
        context["received_at"] = time.monotonic()
        # A redelivered envelope or retried request (retry_attempt, X-Slack-Retry-Num) carries the
        # same event_id or trigger_id: acknowledge it again, but never run it twice.
        key = delivery_key(body)
        if key is not None and not seen.add(key):
            log.info("duplicate delivery %s ignored", key)
            return BoltResponse(status=200, body="")
        next()
        return None

    def acknowledge(ack: Any, context: Any) -> None:
        ack()
        metrics.ACK_SECONDS.observe(time.monotonic() - context.get("received_at", time.monotonic()))

    @app.command("/docker")
    def on_command(ack: Any, body: dict[str, Any], context: Any) -> None:
        acknowledge(ack, context)
        dispatch.command(body)

    @app.action(re.compile("^" + re.escape(ACTION_PREFIX)))
    def on_button(ack: Any, body: dict[str, Any], context: Any) -> None:
        acknowledge(ack, context)
        dispatch.button(body)

    @app.event("app_home_opened")
    def on_home_opened(event: dict[str, Any]) -> None:
        # Events are acked by Bolt before this runs; the view is built by the dispatch's workers.
        if event.get("tab", "home") == "home":
            dispatch.home_opened(event["user"])

    @app.error
    def on_error(error: Exception, body: dict[str, Any]) -> None:
        log.error("bolt could not handle a request: %s", error)

    return app


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
