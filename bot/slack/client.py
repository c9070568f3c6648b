"""Slack Web API clients as the bot makes them: retries on 429 and 5xx, failures counted."""

from __future__ import annotations

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


def count_api_error(error: SlackApiError) -> None:
    """Count a failed Web API call by method (the last part of its URL: a bounded set)."""
    method = str(getattr(error.response, "api_url", "") or "").rstrip("/").rsplit("/", 1)[-1] or "unknown"
    metrics.SLACK_API_ERRORS.labels(method).inc()
