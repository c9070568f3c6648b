"""Hostile input: whatever the command text, a reply comes, nothing escapes, the message fits Slack,
and nothing reaches the engine that is not a valid image reference or ID."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.core.router import Router
from bot.core.services import Services
from bot.engine.reference import InvalidReference, looks_like_id, parse_reference
from bot.render.messages import MAX_SECTION_TEXT, Message
from bot.slack.limits import MAX_MESSAGE_BLOCKS, fit

NASTY = [
    "; rm -rf /",
    "$(reboot)",
    "`id`",
    "../../etc/passwd",
    "\x00",
    "ubuntu\x00latest",
    "' OR 1=1 --",
    "<!channel>",
    "&lt;script&gt;",
    "ubuntu:latest; docker rm -f $(docker ps -aq)",
    "--force",
    "-f",
    "@",
    "@nowhere",
    "--host",
    "--host=all",
    '"',
    "'",
    "“unbalanced",
    "\\",
    "é" * 300,
    "🐳" * 50,
    "A" * 100_000,
]
SUBCOMMANDS = [
    "",
    "help",
    "search",
    "tags",
    "pull",
    "images",
    "ls",
    "inspect",
    "rmi",
    "cleanup",
    "report",
    "hosts",
    "audit",
]

words = st.one_of(
    st.sampled_from(NASTY), st.text(max_size=40), st.from_regex(r"[a-z0-9./:@_-]{1,30}", fullmatch=True)
)
commands = st.builds(
    lambda sub, args: " ".join([sub, *args]).strip(),
    st.sampled_from(SUBCOMMANDS),
    st.lists(words, max_size=6),
)


class Recorder:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    def send(self, message: Message, *, live: bool = False) -> int:
        self.messages.append(message)
        return len(self.messages)

    def update(self, ref: object, message: Message, *, final: bool = False) -> None:
        self.messages.append(message)

    def private(self, message: Message) -> None:
        self.messages.append(message)


_IMAGE_PATH = re.compile(r"^/v[\d.]+/images/(?P<name>.+?)(/json|/history|/push|/tag|/get)?$")


def _image_names(method: str, url: str) -> Iterator[str]:
    """The image names a request to the engine carries."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qs(parts.query)
    if parts.path.endswith("/images/create"):
        name = query.get("fromImage", [""])[0]
        tag = query.get("tag", [""])[0]
        yield f"{name}@{tag}" if tag.startswith("sha256:") else (f"{name}:{tag}" if tag else name)
        return
    match = _IMAGE_PATH.match(urllib.parse.unquote(parts.path))
    if match and match.group("name") not in ("json", "search", "prune", "load", "create"):
        yield match.group("name")


def _valid(name: str) -> bool:
    if looks_like_id(name):
        return True
    try:
        parse_reference(name)
        return True
    except InvalidReference:
        return False


@pytest.fixture
def watched(services: Services) -> Iterator[tuple[Router, list[tuple[str, str]]]]:
    seen: list[tuple[str, str]] = []
    api = services.hosts.default.api

    def record(response, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append((response.request.method, response.request.url))

    api.hooks["response"].append(record)  # requests' own hook: every call the SDK makes, as sent
    try:
        yield Router(services), seen
    finally:
        api.hooks["response"].remove(record)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=commands)
def test_any_command_text_gets_a_reply_and_only_valid_names_reach_the_engine(
    watched: tuple[Router, list[tuple[str, str]]], text: str
) -> None:
    router, seen = watched
    seen.clear()
    reply = Recorder()
    router.handle(text, user="U1", channel="C1", reply=reply)  # a viewer: reads only
    assert reply.messages, f"no reply to {text!r}"
    for message in reply.messages:
        assert message.text
        assert "Traceback" not in message.text and "Something went wrong" not in message.text, (
            text,
            message.text,
        )
        assert len(fit(message).blocks) <= MAX_MESSAGE_BLOCKS
        for block in message.blocks:
            assert len(block.get("text", {}).get("text", "")) <= MAX_SECTION_TEXT
    for method, url in seen:
        for name in _image_names(method, url):
            assert _valid(name), f"{text!r} sent {method} {url}"


@pytest.mark.parametrize(
    "text",
    [
        "rmi " + " ".join(f"img{i}" for i in range(10_000)),
        "inspect " + "a" * 100_000,
        "pull " + "x/" * 20_000 + "y",
        "images \x00",
        "search " + "🐳" * 10_000,
    ],
)
def test_huge_inputs_get_a_short_reply(watched: tuple[Router, list[tuple[str, str]]], text: str) -> None:
    router, seen = watched
    reply = Recorder()
    router.handle(text, user="U1", channel="C1", reply=reply, local=True)  # even an admin
    assert len(reply.messages) == 1
    assert len(reply.messages[0].text) < 500
    assert not [url for method, url in seen if "/images/create" in url or method == "DELETE"]
