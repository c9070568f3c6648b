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


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\u2028\u2029\x85]")


def _escape(value: object) -> object:
    """A string argument (user text, as a rule) with its line breaks and control characters escaped."""
    if isinstance(value, str):
        return _CONTROL.sub(lambda m: repr(m[0])[1:-1], value)
    return value


class _RedactingFilter(logging.Filter):
    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        # Arguments carry user text: a newline in it must not start a line that looks like ours.
        if isinstance(record.args, tuple):
            record.args = tuple(_escape(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _escape(v) for k, v in record.args.items()}
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


class _TextFormatter(logging.Formatter):
    """One record, one line that starts with its time: any further lines (a traceback, text that
    came in a message) are indented, so none of them can pass for a record of its own."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return "\n    ".join(line.replace("\r", "\\r") for line in text.split("\n"))


def make_handler(stream: TextIO, fmt: str = "text", secrets: tuple[str, ...] = ()) -> logging.Handler:
    """The bot's log handler: request ids, JSON on request, secrets redacted."""
    handler = logging.StreamHandler(stream)
    handler.addFilter(_RedactingFilter(secrets))
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(
            _TextFormatter("%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s")
        )
    return handler


def setup_logging(level: str = "INFO", fmt: str = "text", secrets: tuple[str, ...] = ()) -> None:
    root = logging.getLogger()
    root.handlers[:] = [make_handler(sys.stderr, fmt, secrets)]
    root.setLevel(level)
    # urllib3 logs full request lines at DEBUG; keep it quiet unless asked.
    logging.getLogger("urllib3").setLevel(max(logging.getLevelName(level), logging.INFO))
