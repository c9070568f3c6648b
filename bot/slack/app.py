"""The Slack adapter: a Bolt app, built by `create_app` (never at import time).

Every command and button press is acknowledged at once and handed to a `Dispatch` (bot.slack.dispatch):
a worker pool sized for slow Docker calls, in this process or in the worker process (bot.runtime.worker),
which answers through response_url or chat.postMessage/chat.update (bot.slack.reply).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from slack_bolt import App, BoltRequest, BoltResponse
from slack_sdk import WebClient

from bot import metrics
from bot.core.settings import Settings
from bot.render.messages import ACTION_PREFIX
from bot.slack.client import make_web_client

if TYPE_CHECKING:
    from bot.slack.dispatch import Dispatch
    from bot.state.deliveries import Deliveries

log = logging.getLogger("dockerbot.slack")

# Bolt refuses a timestamp older than 5 minutes; a signature seen within that (and a minute's clock
# skew) is a replay of the very same request.
REPLAY_WINDOW = 6 * 60


class RecentKeys:
    """A bounded set of recently seen keys, each kept `ttl` seconds (thread-safe)."""

    def __init__(self, size: int, ttl: float = REPLAY_WINDOW) -> None:
        self.size = size
        self.ttl = ttl
        self._keys: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, key: str) -> bool:
        """True if the key is new."""
        now = time.monotonic()
        with self._lock:
            while self._keys and next(iter(self._keys.values())) < now - self.ttl:
                self._keys.popitem(last=False)
            if key in self._keys:
                return False
            self._keys[key] = now
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


def dispatch_noting_auth(app: App, request: BoltRequest, authorized: threading.Event) -> BoltResponse:
    """`app.dispatch`, setting `authorized` once Bolt has authorized a request: Bolt calls auth.test,
    over the network, the first time only. From then on our listeners only acknowledge and queue
    the work, so a request can be dispatched on a thread that must never block (the HTTP event
    loop, the Socket Mode reader)."""
    response = app.dispatch(request)
    if request.context.authorize_result is not None:
        authorized.set()
    return response


# What the app listens to: the manifest's slash command and bot events must match (test_deploy).
SLASH_COMMAND = "/docker"
BOT_EVENTS = ("app_home_opened",)


def create_app(
    settings: Settings,
    dispatch: Dispatch,
    *,
    client: WebClient | None = None,
    deliveries: Deliveries | None = None,
) -> App:
    """`deliveries`: where replicas sharing a database record the deliveries they took, so that a
    redelivery landing on another replica is not run again (this process's own memory is checked
    first)."""
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
    seen = RecentKeys(100_000)

    def taken_here(keys: list[str]) -> bool:
        """False if another replica took one of these keys already."""
        if deliveries is None:
            return True
        try:
            return deliveries.take(keys)
        except Exception as error:  # noqa: BLE001 - database unreachable: answering beats dropping
            log.warning("could not check the delivery against the other replicas: %s", error)
            return True

    @app.use
    def first_look(
        context: Any, body: dict[str, Any], request: BoltRequest, next: Any
    ) -> BoltResponse | None:
        context["received_at"] = time.monotonic()
        # Signed, but for another workspace or app: with pinning configured, nothing runs.
        team = body.get("team_id") or (body.get("team") or {}).get("id")
        if settings.slack_team_id and team != settings.slack_team_id:
            log.warning("request for team %r refused: pinned to %s", team, settings.slack_team_id)
            return BoltResponse(status=403, body="")
        if settings.slack_app_id and body.get("api_app_id") != settings.slack_app_id:
            log.warning(
                "request for app %r refused: pinned to %s", body.get("api_app_id"), settings.slack_app_id
            )
            return BoltResponse(status=403, body="")
        # A redelivered envelope or retried request (retry_attempt, X-Slack-Retry-Num) carries the
        # same event_id or trigger_id: acknowledge it again, but never run it twice. Over HTTP, the
        # same signature is the same request replayed (a body without trigger_id too).
        signature = (request.headers.get("x-slack-signature") or [None])[0]
        keys = [k for k in (delivery_key(body), signature and f"signature:{signature}") if k]
        if not all([seen.add(k) for k in keys]) or not taken_here(keys):
            log.info("duplicate delivery %s ignored", keys[0])
            return BoltResponse(status=200, body="")
        next()
        return None

    def acknowledge(ack: Any, context: Any) -> None:
        ack()
        metrics.ACK_SECONDS.observe(time.monotonic() - context.get("received_at", time.monotonic()))

    @app.command(SLASH_COMMAND)
    def on_command(ack: Any, body: dict[str, Any], context: Any) -> None:
        acknowledge(ack, context)
        dispatch.command(body)

    @app.action(re.compile("^" + re.escape(ACTION_PREFIX)))
    def on_button(ack: Any, body: dict[str, Any], context: Any) -> None:
        acknowledge(ack, context)
        dispatch.button(body)

    @app.event(BOT_EVENTS[0])
    def on_home_opened(event: dict[str, Any]) -> None:
        # Events are acked by Bolt before this runs; the view is built by the dispatch's workers.
        if event.get("tab", "home") == "home":
            dispatch.home_opened(event["user"])

    @app.error
    def on_error(error: Exception, body: dict[str, Any]) -> None:
        log.error("bolt could not handle a request: %s", error)

    return app
