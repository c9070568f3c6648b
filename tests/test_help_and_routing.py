"""/docker help, routing, usage replies and failures, read as a chat transcript."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from bot.core.commands import ArgParser, Command, Reply, Request
from bot.core.router import Router
from bot.core.services import Services
from bot.render.messages import plain
from bot.render.text import mrkdwn_to_text
from handlers import COMMANDS
from tests.chat import ChatBot


def test_the_product_commands_are_registered() -> None:
    names = [c.name for c in COMMANDS]
    assert len(names) == len(set(names)), "one registration each"
    assert {"search", "pull", "images", "inspect", "rmi", "cleanup", "report", "help"} <= set(names)


def test_help_lists_every_subcommand_with_summary_and_example(chat: ChatBot) -> None:
    out = chat("/docker help")
    for cmd in COMMANDS:  # every registered command, whoever added it
        assert f"/docker {cmd.name} — {mrkdwn_to_text(cmd.summary)}" in out
        assert cmd.example in out


def test_empty_command_is_help(chat: ChatBot) -> None:
    assert chat("/docker") == chat("/docker help")


def test_help_for_one_command_gives_its_usage(chat: ChatBot) -> None:
    for cmd in COMMANDS:
        out = chat(f"help {cmd.name}")
        assert cmd.usage in out
        assert cmd.example in out


def test_images_has_the_ls_alias(chat: ChatBot) -> None:
    assert chat("ls --bogus") == chat("images --bogus")


def test_unknown_subcommand_suggests_the_closest_and_lists_usage(chat: ChatBot) -> None:
    out = chat("/docker imgaes")
    assert "Unknown command imgaes. Did you mean images?" in out
    for cmd in COMMANDS:
        assert cmd.usage in out


def test_unknown_subcommand_without_a_close_match(chat: ChatBot) -> None:
    out = chat("/docker zzzzzz")
    assert "Unknown command zzzzzz." in out
    assert "Did you mean" not in out


def test_bad_flag_gets_the_subcommands_usage(chat: ChatBot) -> None:
    out = chat("/docker help --frobnicate")
    assert "Unrecognized arguments: --frobnicate." in out
    assert "Usage: /docker help [command]" in out


def test_unbalanced_quotes_and_nul_get_a_short_reply(chat: ChatBot) -> None:
    assert "unbalanced quotes" in chat('/docker help "pull')
    assert "NUL" in chat("/docker help \x00")


def test_typographic_quotes_work_like_ascii_quotes(chat: ChatBot) -> None:
    assert chat("/docker help “pull”") == chat('/docker help "pull"')


def _crashing_services(services: Services) -> Services:
    def boom(req: Request, reply: Reply) -> None:
        raise RuntimeError("kaboom: internal detail")

    def flag(parser: ArgParser) -> None:
        parser.add_argument("--filter", action="append", default=[])
        parser.add_argument("word", nargs="?")
        parser.add_argument("--count", type=int, default=1)
        parser.add_argument("--sort", choices=["a", "b"], default="a")

    def echo(req: Request, reply: Reply) -> None:
        reply.send(plain(f"word={req.args.word} filters={req.args.filter}"))

    extra = [
        Command(name="boom", summary="crashes", example="/docker boom", run=boom),
        Command(name="echo", summary="echoes", example="/docker echo", run=echo, add_arguments=flag),
    ]
    return dataclasses.replace(services, commands=[*COMMANDS, *extra])


def test_unexpected_error_is_logged_with_an_id_the_reply_quotes(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    chat = ChatBot(Router(_crashing_services(services)))
    with caplog.at_level(logging.ERROR):
        out = chat("boom")
    assert "Traceback" not in out and "kaboom" not in out
    assert "Something went wrong while running /docker boom (error id " in out
    error_id = out.split("error id ")[1].split(")")[0]
    logged = [r for r in caplog.records if error_id in r.getMessage()]
    assert logged and logged[0].exc_info is not None


def test_flags_parse_like_a_shell_line(services: Services) -> None:
    chat = ChatBot(Router(_crashing_services(services)))
    out = chat("echo 'two words' --filter a=1 --filter=b=2")
    assert "word=two words filters=['a=1', 'b=2']" in out


def test_bad_typed_values_get_usage_not_an_error_id(services: Services) -> None:
    chat = ChatBot(Router(_crashing_services(services)))
    out = chat("echo --count abc")
    assert "Argument --count: invalid int value: 'abc'." in out
    assert "Usage: /docker echo [--filter FILTER] [--count COUNT] [--sort {a,b}] [word]" in out
    assert "invalid choice: 'c'" in chat("echo --sort c")
    # argparse echoes the value; a huge one is cut so the reply still fits one Slack section.
    out = chat("echo --sort " + "c" * 3500)
    assert "invalid choice: 'ccc" in out and "…" in out and "Something went wrong" not in out


def test_json_logs_carry_the_request_id_the_error_reply_quotes(services: Services) -> None:
    import io
    import json

    from bot.logs import make_handler

    stream = io.StringIO()
    handler = make_handler(stream, "json")
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        out = ChatBot(Router(_crashing_services(services)))("boom")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    error_id = out.split("error id ")[1].split(")")[0]
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    mine = [line for line in lines if line["request_id"] == error_id]
    assert any(line["level"] == "ERROR" and "kaboom" in line["message"] for line in mine)
    assert any(line["message"] == "command from terminal in terminal: /docker boom" for line in mine)
