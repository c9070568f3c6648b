"""Text the bot did not write never becomes a live mention or link in Slack (bot/render/mrkdwn.py).

"Mention bait" goes everywhere outside text comes from: image labels, Env and Cmd on the real
engine, a dangling image (`<none>`), a Docker Hub description, what the user types (a ref, a
filter, a policy), and scheduled runs. Every payload the fake Slack receives is then read as
Slack reads mrkdwn: any `<…>` left in a mrkdwn text or a fallback is a control sequence, and
only the requester's mention and the channel the bot resolved may be among them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from bot.core.services import Services
from bot.core.settings import Settings
from bot.jobs.scheduler import Scheduler
from bot.render.messages import Message
from bot.sandbox import Engine
from bot.slack.client import make_web_client
from bot.slack.home import publish_home
from bot.slack.reply import SlackPoster
from tests.chat import ChatBot
from tests.conftest import SlackHttpBot
from tests.fakes.hub import FakeHub, hub_for, hub_repo
from tests.fakes.slack import Call, FakeSlack
from tests.test_images import build

PHISH = "<https://evil.example|Re-authenticate dockerbot>"
BAIT = f"<!everyone> <!here|here> <@U0VICTIM> <#C0VICTIM|general> {PHISH}"
FENCE_BAIT = "```"  # would end a code block early
MEANT = {"<@U111>", "<#C111>"}  # the requester, and the channel the command came from
TOKEN = re.compile(r"<[^<>]*>")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"admins": ("U111",)})


@pytest.fixture(scope="module")
def bait_images(engine: Engine, pulled: None) -> Iterator[str]:
    cli = engine.cli
    dangling = build(cli, "dockerbot-test/bait:1", "FROM ubuntu\nLABEL old=1\n")
    dockerfile = (
        "FROM ubuntu\n"
        f'LABEL bait="{BAIT} {FENCE_BAIT} & <none>" "<!channel>"="key"\n'
        f'ENV GREETING="{BAIT}" FENCE="a{FENCE_BAIT}b"\n'
        f'CMD ["echo", "<!everyone>", "{FENCE_BAIT}"]\n'
    )
    bait = build(cli, "dockerbot-test/bait:1", dockerfile)
    yield bait
    cli("rmi", "-f", bait, dangling, check=False)


@pytest.fixture
def bait_hub(services: Services) -> Iterator[FakeHub]:
    repo = hub_repo("evil/bait", stars=1, pulls=2, description=f"{BAIT} {FENCE_BAIT} & <none>")
    other = hub_repo("evil/bait-too", stars=1, pulls=2, description="<!channel>")
    with hub_for(services, [repo, other]) as fake:
        yield fake


def slack_escaped(text: str) -> str:
    """Command text as Slack sends it: &, < and > escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mrkdwn_texts(call: Call) -> list[str]:
    """Every text Slack parses as mrkdwn in a payload: the fallback, and mrkdwn text objects."""
    body = call.body
    view = body.get("view") if isinstance(body.get("view"), dict) else {}
    out = [str(body["text"])] if body.get("text") else []
    if body.get("initial_comment"):
        out.append(str(body["initial_comment"]))

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn" and isinstance(node.get("text"), str):
                out.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(body.get("blocks"))
    walk(view.get("blocks"))
    return out


def unintended(fake: FakeSlack) -> list[str]:
    found = []
    for call in fake.calls():
        for text in mrkdwn_texts(call):
            found += [f"{call.method}: {t}" for t in TOKEN.findall(text) if t not in MEANT]
            inside = text.split("```")
            if len(inside) % 2 == 0:
                found.append(f"{call.method}: an unbalanced code fence in {text[:200]!r}")
    return found


COMMANDS = [
    "images",
    "images -a",
    'images --host all --filter "<!here>=1"',
    "images --filter label=<!channel>",
    "inspect dockerbot-test/bait:1",
    "inspect dockerbot-test/bait:1 --json",
    "inspect <none>",
    "inspect <!channel>",
    "rmi dockerbot-test/bait:1 nosuch <!channel> <@U0VICTIM>",
    "pull <!here>",
    "pull evil.example/<https://evil.example|x>",
    "<!channel>",
    "help <!channel>",
    "search bait",
    "search <!channel>",
    "tags evil/bait",
    'cleanup preview --policy "exclude <!channel>, dangling"',
    'cleanup schedule "0 3 * * *" --policy "exclude <!channel>" --channel <@U0VICTIM>',
    'report schedule "0 8 * * 1" --channel <!channel>',
    "report cancel <!channel>",
    "report now",
]


def test_no_command_reply_carries_a_live_mention_it_did_not_mean(
    slack_http: SlackHttpBot, bait_images: str, bait_hub: FakeHub
) -> None:
    fake = slack_http.slack
    for i, command in enumerate(COMMANDS):
        status, _ = slack_http.command(slack_escaped(command), tag=f"c{i}")
        assert status == 200, command
        fake.wait_for("response_url", lambda c, i=i: c.tag == f"c{i}", timeout=60)  # type: ignore[misc]
    time.sleep(0.5)  # a file upload after the reply
    assert unintended(fake) == []
    # The bait did arrive, escaped: this test would see a live token if one were sent.
    everything = "\n".join(t for c in fake.calls() for t in mrkdwn_texts(c))
    for shown in (
        "&lt;!everyone&gt;",
        "&lt;none&gt;",
        "&lt;!channel&gt;",
        "&lt;https://evil.example|Re-auth",
    ):
        assert shown in everything, shown
    assert "<@U111>" in everything  # the one mention the bot means (the rmi card's requester)


def test_scheduled_summaries_carry_no_live_mention_either(
    services: Services, settings: Settings, fake_slack: FakeSlack, bait_images: str
) -> None:
    class Collect:
        def __init__(self) -> None:
            self.sent: list[tuple[str, Message]] = []

        def deliver(self, channel: str, message: Message) -> None:
            self.sent.append((channel, message))

    inbox = Collect()
    scheduler = Scheduler(services, inbox)  # type: ignore[arg-type]
    scheduler.start()
    try:
        cleanup = scheduler.add(
            "cleanup", "0 3 * * *", timezone="UTC", channel="C111", host="local",
            params={"policy": "exclude <!channel> <https://evil.example|x>, dangling"}, created_by="U111",
        )  # fmt: skip
        report = scheduler.add(
            "report", "0 8 * * 1", timezone="UTC", channel="C111", host="local", params={}, created_by="U111"
        )
        scheduler.run(cleanup.id)
        scheduler.run(report.id)
    finally:
        scheduler.shutdown(wait=False)
    assert len(inbox.sent) == 2
    client = make_web_client(settings.model_copy(update={"slack_api_url": fake_slack.api_url}))
    poster = SlackPoster(client)
    for channel, message in inbox.sent:
        poster.post(channel, message)
    assert len(fake_slack.calls("chat.postMessage", ok=True)) == 2
    services.scheduler = scheduler  # the Home tab shows the last cleanup's summary
    try:
        publish_home(client, services, "U111")
    finally:
        services.scheduler = None
    [home] = fake_slack.calls("views.publish", ok=True)
    assert "Last cleanup" in str(home.body)
    assert unintended(fake_slack) == []
    everything = "\n".join(t for c in fake_slack.calls() for t in mrkdwn_texts(c))
    assert "&lt;!channel&gt;" in everything  # the policy, echoed, escaped


def test_the_terminal_shows_the_text_as_it_is(chat: ChatBot, bait_images: str) -> None:
    out = chat("inspect dockerbot-test/bait:1")
    assert "<!everyone>" in out and "<https://evil.example|Re-authenticate dockerbot>" in out
    assert f"a{FENCE_BAIT}b" in out and "&lt;" not in out and "\u200b" not in out
    assert "<none>" in chat("images -a")
