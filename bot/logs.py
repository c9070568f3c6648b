"""Logging: a request id on every line, JSON on request, and no secrets ever."""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar
from typing import TextIO

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

# Slack tokens (bot, user, app-level, config) and anything that looks like a signing secret in a URL.
_SECRET = re.compile(r"\b(xox[abposr]|xapp|xoxe)-[A-Za-z0-9-]+")


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    text = _SECRET.sub("[redacted]", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


class _RedactingFilter(logging.Filter):
    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        # Render once here so arguments (exceptions, dicts) are redacted too.
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = None
        record.msg, record.args = redact(message, self.secrets), None
        return True


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
                "level": record.levelname,
                "logger": record.name,
                "request_id": getattr(record, "request_id", "-"),
                "message": record.getMessage(),
            }
        )


def make_handler(stream: TextIO, fmt: str = "text", secrets: tuple[str, ...] = ()) -> logging.Handler:
    """The bot's log handler: request ids, JSON on request, secrets redacted."""
    handler = logging.StreamHandler(stream)
    handler.addFilter(_RedactingFilter(secrets))
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s")
        )
    return handler


def setup_logging(level: str = "INFO", fmt: str = "text", secrets: tuple[str, ...] = ()) -> None:
    root = logging.getLogger()
    root.handlers[:] = [make_handler(sys.stderr, fmt, secrets)]
    root.setLevel(level)
    # urllib3 logs full request lines at DEBUG; keep it quiet unless asked.
    logging.getLogger("urllib3").setLevel(max(logging.getLevelName(level), logging.INFO))
