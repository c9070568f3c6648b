"""Turns command text and button presses into handler calls, and every failure into a short reply."""

from __future__ import annotations

import argparse
import difflib
import html
import logging
import secrets
import shlex
from collections.abc import Iterator
from contextlib import contextmanager

import docker

from bot import metrics
from bot.core.access import rank
from bot.core.channels import channel_text
from bot.core.commands import (
    ActionRequest,
    Command,
    MessageRef,
    Refused,
    Reply,
    Request,
    UsageError,
    UserError,
    refusal,
)
from bot.core.services import Services
from bot.engine.fleet import CapturingReply, HostResult, fan_out, fleet_message
from bot.engine.hosts import DockerHost, EngineUnavailable, connection_cause, connection_errors
from bot.logs import request_id_var
from bot.render.formatting import ellipsis
from bot.render.messages import ACTION_KEY, ACTION_PREFIX, Message, code_blocks, plain, section

log = logging.getLogger("dockerbot.router")

# Slack (and macOS) turn typed quotes into typographic ones; shlex only knows ASCII quotes.
_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'"})
MAX_TEXT = 4000  # Slack caps a slash command's text well below this; longer input is not a command


def take_host(words: list[str]) -> tuple[str | None, list[str]]:
    """`@NAME` as the first word, or `--host NAME` / `--host=NAME` anywhere: (host spec, other words)."""
    spec: str | None = None
    rest: list[str] = []
    if words and words[0].startswith("@") and len(words[0]) > 1:
        spec, words = words[0][1:], words[1:]
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--host":
            if i + 1 >= len(words):
                raise UsageError("--host needs a host name (or `all`)")
            spec, i = words[i + 1], i + 2
            continue
        if word.startswith("--host="):
            spec = word.partition("=")[2]
        else:
            rest.append(word)
        i += 1
    return spec, rest


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
        # argparse echoes what was typed; a huge value must not push the reply past Slack's limits.
        problem = ellipsis(problem, 300)
        lines.insert(0, f"{problem[0].upper()}{problem[1:]}.")
    return plain("\n".join(lines))


def outcome_of(error: BaseException) -> str:
    """A short, bounded label for metrics."""
    if isinstance(error, UsageError):
        return "usage"
    if isinstance(error, (EngineUnavailable, *connection_errors())):
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
    def handle(self, text: str, *, user: str, channel: str, reply: Reply, local: bool = False) -> None:
        """Run one `/docker` command. `local`: typed in the terminal by someone holding the engine."""
        request_id = new_request_id()
        with request_scope(request_id):
            log.info("command from %s in %s: /docker %s", user, channel, text[:200])
            cmd: Command | None = None
            host = self.services.hosts.default
            outcome = "ok"
            try:
                if not self.services.access.channel_allowed(channel, local=local):
                    outcome = "channel_refused"
                    reply.private(self._channel_notice())
                    return
                host_spec, words = take_host(split_command_line(text))
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
                hosts = self.services.hosts.select(host_spec)
                host = hosts[0]
                several = host_spec == "all" or len(hosts) > 1
                if several and not (cmd.fleet(args) or cmd.spans_hosts(args)):
                    raise UserError(
                        f"`/docker {cmd.name}` runs on one host at a time; name it with `--host NAME`."
                    )
                needed = cmd.role_for(args)
                roles = {}
                for target in hosts:
                    # An admin's command makes a destructive card or a standing order: the user
                    # groups granting the role are read from Slack now, not from the cache.
                    roles[target.name] = self.services.access.role(
                        user, channel, target.name, local=local, fresh=needed == "admin"
                    )
                    if rank(roles[target.name]) < rank(needed):
                        outcome = "refused"
                        self._refuse(
                            cmd, needed, roles[target.name], target, user, channel, request_id, reply
                        )
                        return
                if not several or cmd.spans_hosts(args):
                    request = Request(
                        user,
                        channel,
                        args,
                        host,
                        self.services,
                        request_id,
                        roles[host.name],
                        local,
                        host_spec,
                    )
                    cmd.run(request, reply)
                else:
                    self._fan_out(cmd, args, hosts, roles, user, channel, request_id, local, reply)
            except Refused as error:  # on the host of the object acted on: private, audited already
                outcome = "refused"
                reply.private(plain(str(error)))
            except Exception as error:  # noqa: BLE001 - every failure becomes a reply, never a traceback
                outcome = outcome_of(error)
                reply.send(self.describe_failure(error, request_id, cmd.name if cmd else None, host))
            finally:
                # Only known command names as labels: user text must not grow the metric's cardinality.
                metrics.COMMANDS.labels(cmd.name if cmd else "unknown", outcome).inc()

    def _refuse(
        self,
        cmd: Command,
        needed: str,
        role: str | None,
        host: DockerHost,
        user: str,
        channel: str,
        request_id: str,
        reply: Reply,
    ) -> None:
        """Private, audited, and nothing else happens."""
        self.services.store.audit(
            user=user,
            channel=channel,
            host=host.name,
            action=f"{cmd.name}.refused",
            result=f"needs {needed}, has {role or 'none'}",
            request_id=request_id,
        )
        reply.private(plain(refusal(self.services, f"/docker {cmd.name}", needed, role, host.name)))

    def _channel_notice(self) -> Message:
        channels = ", ".join(channel_text(c) for c in sorted(self.services.access.policy.channels))
        return plain(f"dockerbot does not answer in this channel. Use it in {channels}.")

    def _fan_out(
        self,
        cmd: Command,
        args: argparse.Namespace,
        hosts: list[DockerHost],
        roles: dict[str, str | None],
        user: str,
        channel: str,
        request_id: str,
        local: bool,
        reply: Reply,
    ) -> None:
        """A read command on several hosts: in parallel, each with a deadline, one combined reply."""

        def run_on(target: DockerHost) -> list[Message]:
            with request_scope(request_id):
                captured = CapturingReply()
                request = Request(
                    user,
                    channel,
                    args,
                    target,
                    self.services,
                    request_id,
                    roles[target.name],
                    local,
                    in_fleet=True,
                )
                cmd.run(request, captured)
                return list(captured.messages.values())

        timeout = self.services.settings.host_timeout
        results = fan_out(hosts, run_on, timeout)

        def describe(result: HostResult) -> str:
            if result.timed_out:
                return f"did not answer within {timeout:g} s"
            assert result.error is not None
            return self.describe_failure(
                result.error, request_id, cmd.name, self.services.hosts.get(result.host)
            ).text

        reply.send(fleet_message(f"/docker {cmd.name} on {len(hosts)} hosts", results, describe))

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
        local: bool = False,
    ) -> None:
        request_id = new_request_id()
        with request_scope(request_id):
            log.info("button %s pressed by %s in %s", action_id, user, channel)
            host = self.services.hosts.default
            runner = self._action(action_id)
            outcome = "ok"
            try:
                # A press is checked like a command: the channel allowlist, then some role at all
                # (each action then checks the role it needs on the host its card is about).
                if not self.services.access.channel_allowed(channel, local=local):
                    outcome = "channel_refused"
                    reply.private(self._channel_notice())
                    return
                if not local and not any(
                    self.services.access.role(user, channel, name) for name in self.services.hosts.names
                ):
                    outcome = "refused"
                    self.services.store.audit(
                        user=user,
                        channel=channel,
                        host=host.name,
                        action="button.refused",
                        result="needs a role, has none",
                        request_id=request_id,
                    )
                    reply.private(plain(refusal(self.services, "that button", "viewer", None, host.name)))
                    return
                if runner is None:
                    outcome = "unknown_action"
                    reply.private(plain("That button is no longer supported."))
                    return
                runner(
                    ActionRequest(user, channel, value, message, host, self.services, request_id, local),
                    reply,
                )
            except Exception as error:  # noqa: BLE001
                outcome = outcome_of(error)
                reply.private(self.describe_failure(error, request_id, None, host))
            finally:
                label = action_id.removeprefix(ACTION_PREFIX).split(ACTION_KEY, 1)[0] if runner else "unknown"
                metrics.BUTTONS.labels(label, outcome).inc()

    def _action(self, action_id: str):  # type: ignore[no-untyped-def]
        name = action_id.removeprefix(ACTION_PREFIX).split(ACTION_KEY, 1)[0]
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
        if isinstance(error, connection_errors()):
            return plain(str(EngineUnavailable(host, connection_cause(error))))
        log.exception("unexpected error (error id %s)", request_id)
        what = f"`/docker {command}`" if command else "that"
        return plain(
            f"Something went wrong while running {what} (error id `{request_id}`). "
            "The details are in the bot's log."
        )
