"""Turns command text and button presses into handler calls, and every failure into a short reply."""

from __future__ import annotations

import difflib
import html
import logging
import secrets
import shlex
from collections.abc import Iterator
from contextlib import contextmanager

import docker

from bot import metrics
from bot.commands import ActionRequest, Command, MessageRef, Reply, Request, UsageError, UserError
from bot.hosts import CONNECTION_ERRORS, DockerHost, EngineUnavailable, connection_cause
from bot.logs import request_id_var
from bot.messages import ACTION_PREFIX, Message, code_blocks, plain, section
from bot.services import Services

log = logging.getLogger("dockerbot.router")

# Slack (and macOS) turn typed quotes into typographic ones; shlex only knows ASCII quotes.
_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'"})
MAX_TEXT = 4000  # Slack caps a slash command's text well below this; longer input is not a command


def split_command_line(text: str) -> list[str]:
    """Split like a shell: quotes group words, `--flag=value` stays one word."""
    if len(text) > MAX_TEXT:
        raise UsageError(f"That command is {len(text):,} characters long; the limit is {MAX_TEXT:,}.")
    if "\x00" in text:
        raise UsageError("The command contains a NUL character.")
    # Slack escapes &, < and > in command text.
    text = html.unescape(text).translate(_QUOTES)
    try:
        return shlex.split(text)
    except ValueError as error:
        raise UsageError(f"Could not read the command: {str(error).lower()} (unbalanced quotes?)") from None


def new_request_id() -> str:
    return secrets.token_hex(4)


@contextmanager
def request_scope(request_id: str) -> Iterator[None]:
    token = request_id_var.set(request_id)
    try:
        yield
    finally:
        request_id_var.reset(token)


def usage_message(cmd: Command, problem: str | None = None) -> Message:
    lines = [f"*Usage:* `{cmd.usage}`", cmd.summary, f"Example: `{cmd.example}`"]
    if problem:
        lines.insert(0, f"{problem[0].upper()}{problem[1:]}.")
    return plain("\n".join(lines))


def outcome_of(error: BaseException) -> str:
    """A short, bounded label for metrics."""
    if isinstance(error, UsageError):
        return "usage"
    if isinstance(error, (EngineUnavailable, *CONNECTION_ERRORS)):
        return "engine_unavailable"
    if isinstance(error, UserError):
        return "user_error"
    if isinstance(error, docker.errors.APIError):
        return "engine_error"
    return "error"


class Router:
    def __init__(self, services: Services) -> None:
        self.services = services

    # --- slash command -------------------------------------------------------------------------
    def handle(self, text: str, *, user: str, channel: str, reply: Reply, is_admin: bool = False) -> None:
        request_id = new_request_id()
        with request_scope(request_id):
            log.info("command from %s in %s: /docker %s", user, channel, text[:200])
            cmd: Command | None = None
            host = self.services.hosts.default
            outcome = "ok"
            try:
                words = split_command_line(text)
                name = words[0].lower() if words else "help"
                cmd = self.services.command(name)
                if cmd is None:
                    outcome = "unknown_command"
                    reply.send(self._unknown(name))
                    return
                try:
                    args = cmd.parser().parse_args(words[1:])
                except UsageError as error:
                    outcome = "usage"
                    reply.send(usage_message(cmd, str(error)))
                    return
                cmd.run(
                    Request(user, channel, args, host, self.services, request_id, is_admin=is_admin), reply
                )
            except Exception as error:  # noqa: BLE001 - every failure becomes a reply, never a traceback
                outcome = outcome_of(error)
                reply.send(self.describe_failure(error, request_id, cmd.name if cmd else None, host))
            finally:
                # Only known command names as labels: user text must not grow the metric's cardinality.
                metrics.COMMANDS.labels(cmd.name if cmd else "unknown", outcome).inc()

    def _unknown(self, name: str) -> Message:
        names = [c.name for c in self.services.commands] + [
            a for c in self.services.commands for a in c.aliases
        ]
        guess = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
        first = f"Unknown command `{name}`."
        if guess:
            match = self.services.command(guess[0])
            assert match is not None
            first += f" Did you mean `{match.name}`?"
        listing = "\n".join(f"{c.usage}" for c in self.services.commands)
        return Message(
            text=f"{first} Try /docker help.",
            blocks=[section(first), *code_blocks(listing), section("`/docker help` explains each command.")],
        )

    # --- button press --------------------------------------------------------------------------
    def press(
        self,
        action_id: str,
        value: str,
        *,
        user: str,
        channel: str,
        message: MessageRef,
        reply: Reply,
        is_admin: bool = False,
    ) -> None:
        request_id = new_request_id()
        with request_scope(request_id):
            log.info("button %s pressed by %s in %s", action_id, user, channel)
            host = self.services.hosts.default
            runner = self._action(action_id)
            outcome = "ok"
            try:
                if runner is None:
                    outcome = "unknown_action"
                    reply.private(plain("That button is no longer supported."))
                    return
                runner(
                    ActionRequest(user, channel, value, message, host, self.services, request_id, is_admin),
                    reply,
                )
            except Exception as error:  # noqa: BLE001
                outcome = outcome_of(error)
                reply.private(self.describe_failure(error, request_id, None, host))
            finally:
                label = action_id.removeprefix(ACTION_PREFIX) if runner else "unknown"
                metrics.BUTTONS.labels(label, outcome).inc()

    def _action(self, action_id: str):  # type: ignore[no-untyped-def]
        name = action_id.removeprefix(ACTION_PREFIX)
        for cmd in self.services.commands:
            if name in cmd.actions:
                return cmd.actions[name]
        return None

    # --- failures ------------------------------------------------------------------------------
    def describe_failure(
        self, error: BaseException, request_id: str, command: str | None, host: DockerHost
    ) -> Message:
        if isinstance(error, UsageError):
            cmd = self.services.command(command) if command else None
            return usage_message(cmd, str(error)) if cmd else plain(str(error))
        if isinstance(error, UserError):
            return plain(str(error))
        if isinstance(error, docker.errors.APIError):
            return plain(f"Error response from daemon: {error.explanation or error}")
        if isinstance(error, CONNECTION_ERRORS):
            return plain(str(EngineUnavailable(host, connection_cause(error))))
        log.exception("unexpected error (error id %s)", request_id)
        what = f"`/docker {command}`" if command else "that"
        return plain(
            f"Something went wrong while running {what} (error id `{request_id}`). "
            "The details are in the bot's log."
        )
