"""Prometheus metrics (prometheus-client), served at /metrics."""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector
from slack_sdk.http_retry import RetryHandler

REGISTRY = CollectorRegistry()

COMMANDS = Counter(
    "dockerbot_commands", "Commands run, by subcommand and outcome", ["command", "outcome"], registry=REGISTRY
)
BUTTONS = Counter(
    "dockerbot_buttons", "Button presses, by action and outcome", ["action", "outcome"], registry=REGISTRY
)
ACK_SECONDS = Histogram(
    "dockerbot_ack_seconds",
    "Time from receiving a Slack request to acknowledging it",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5),
    registry=REGISTRY,
)
PULLS = Counter("dockerbot_pulls", "Engine pulls, by outcome", ["outcome"], registry=REGISTRY)
PULL_BYTES = Counter("dockerbot_pull_bytes", "Bytes downloaded by pulls", registry=REGISTRY)
CLEANUP_RUNS = Counter("dockerbot_cleanup_runs", "Cleanup runs, by outcome", ["outcome"], registry=REGISTRY)
RECLAIMED_BYTES = Counter(
    "dockerbot_reclaimed_bytes", "Bytes reclaimed by rmi and cleanup", registry=REGISTRY
)
SCHEDULER_FAILURES = Counter(
    "dockerbot_scheduler_failures", "Scheduled runs that failed or were missed", ["kind"], registry=REGISTRY
)
SLACK_API_ERRORS = Counter(
    "dockerbot_slack_api_errors", "Slack API calls that failed", ["method"], registry=REGISTRY
)
REGISTRY_LOOKUPS = Counter(
    "dockerbot_registry_lookups",
    "Registry digest lookups (/docker outdated), by what the registry said: current, gone, unknown",
    ["state"],
    registry=REGISTRY,
)
SLACK_RETRIES = Counter(
    "dockerbot_slack_retries", "Slack API calls retried, by reason", ["reason"], registry=REGISTRY
)
SCHEDULER_LEASE = Gauge(
    "dockerbot_scheduler_lease_held",
    "1 while this replica holds the scheduler lease (it runs the schedules and the ledger's watchers)",
    ["replica"],
    registry=REGISTRY,
    multiprocess_mode="livemax",  # the worker process sets it; a dead worker's value is dropped
)


def exposition() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # served: the sum over the bot's processes
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


class CountingRetries(RetryHandler):
    """Wraps one of slack-sdk's retry handlers and counts the retries it decides on."""

    def __init__(self, inner: RetryHandler, reason: str) -> None:
        super().__init__(max_retry_count=inner.max_retry_count, interval_calculator=inner.interval_calculator)
        self.inner = inner
        self.reason = reason

    def _can_retry(self, *, state: Any, request: Any, response: Any = None, error: Any = None) -> bool:
        decision = self.inner._can_retry(state=state, request=request, response=response, error=error)
        if decision:
            SLACK_RETRIES.labels(self.reason).inc()
        return decision

    def prepare_for_next_attempt(
        self, *, state: Any, request: Any, response: Any = None, error: Any = None
    ) -> None:
        self.inner.prepare_for_next_attempt(state=state, request=request, response=response, error=error)
