"""Slack Web API clients as the bot makes them: retries on 429 and 5xx, failures counted."""

from __future__ import annotations

from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import RetryHandler
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from bot import metrics
from bot.core.settings import Settings
from bot.metrics import CountingRetries

# Every Web API method the bot calls, and the bot scope it needs (None: no bot scope). The app
# manifest asks for exactly these scopes (tests/test_deploy.py), and the bot's client refuses
# any other method, so a new call cannot ship without its scope.
WEB_API_METHODS: dict[str, str | None] = {
    "auth.test": None,
    "apps.connections.open": None,  # Socket Mode; the app-level token's connections:write
    "chat.postMessage": "chat:write",
    "chat.update": "chat:write",
    "chat.postEphemeral": "chat:write",
    "conversations.open": "im:write",  # a private reply's file goes to the requester's DM
    "files.getUploadURLExternal": "files:write",  # files_upload_v2, step 1
    "files.completeUploadExternal": "files:write",  # files_upload_v2, step 3
    "usergroups.users.list": "usergroups:read",  # roles granted to a user group
    "views.publish": None,  # App Home
}


class UndeclaredSlackMethod(RuntimeError):
    """A call to a Web API method missing from WEB_API_METHODS (and so, maybe, from the manifest)."""


class DeclaredWebClient(WebClient):
    """slack-sdk's WebClient, limited to the declared methods: every call goes through api_call."""

    def api_call(self, api_method: str, **kwargs: Any) -> Any:  # type: ignore[override]
        if api_method not in WEB_API_METHODS:
            raise UndeclaredSlackMethod(f"{api_method} is not in bot.slack.client.WEB_API_METHODS")
        return super().api_call(api_method, **kwargs)


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
    return DeclaredWebClient(
        token=token, base_url=base_url.rstrip("/") + "/", retry_handlers=retry_handlers()
    )


def count_api_error(error: SlackApiError) -> None:
    """Count a failed Web API call by method (the last part of its URL: a bounded set)."""
    method = str(getattr(error.response, "api_url", "") or "").rstrip("/").rsplit("/", 1)[-1] or "unknown"
    metrics.SLACK_API_ERRORS.labels(method).inc()
