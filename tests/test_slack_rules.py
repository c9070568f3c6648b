"""The fake Slack refuses what Slack refuses: one payload per rule (tests/fakes/slack_rules.py).

Each payload goes through the real slack_sdk clients, over HTTP, to the fake."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from tests.fakes.slack import FakeSlack


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as f:
        yield f


@pytest.fixture
def client(fake: FakeSlack) -> WebClient:
    return WebClient(base_url=fake.api_url, token="xoxb-test")


def section(text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}, **extra}


def button(action_id: str, text: str = "Pull", **extra: Any) -> dict[str, Any]:
    return {"type": "button", "action_id": action_id, "text": {"type": "plain_text", "text": text}, **extra}


CONFIRM = {
    "title": {"type": "plain_text", "text": "Sure?"},
    "text": {"type": "mrkdwn", "text": "It goes."},
    "confirm": {"type": "plain_text", "text": "Remove"},
    "deny": {"type": "plain_text", "text": "Cancel"},
}

# (rule, blocks, the error line Slack's answer must contain)
BAD_BLOCKS = [
    ("unknown block type", [{"type": "sectoin", "text": {"type": "mrkdwn", "text": "x"}}], "/blocks/0/type"),
    ("section text over 3000", [section("x" * 3001)], "/blocks/0/text"),
    (
        "section field over 2000",
        [{"type": "section", "fields": [{"type": "mrkdwn", "text": "x" * 2001}]}],
        "/blocks/0/fields/0",
    ),
    (
        "more than 10 fields",
        [{"type": "section", "fields": [{"type": "mrkdwn", "text": "x"}] * 11}],
        "/blocks/0",
    ),
    (
        "header over 150",
        [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}],
        "/blocks/0/text",
    ),
    ("header in mrkdwn", [{"type": "header", "text": {"type": "mrkdwn", "text": "h"}}], "plain_text"),
    (
        "button text over 75",
        [{"type": "actions", "elements": [button("a", "b" * 76)]}],
        "/blocks/0/elements/0/text",
    ),
    (
        "button value over 2000",
        [{"type": "actions", "elements": [button("a", value="v" * 2001)]}],
        "/blocks/0/elements/0",
    ),
    (
        "confirm title over 100",
        [
            {
                "type": "actions",
                "elements": [
                    button("a", confirm={**CONFIRM, "title": {"type": "plain_text", "text": "t" * 101}})
                ],
            }
        ],
        "/blocks/0/elements/0/confirm",
    ),
    (
        "action_id twice in a block",
        [{"type": "actions", "elements": [button("dockerbot:pull.start"), button("dockerbot:pull.start")]}],
        "duplicate action_id 'dockerbot:pull.start' in block [json-pointer:/blocks/0/elements/1/action_id]",
    ),
    (
        "action_id twice in a message",
        [{"type": "actions", "elements": [button("a")]}, section("x", accessory=button("a"))],
        "/blocks/1/accessory/action_id",
    ),
    ("block_id twice", [section("x", block_id="b"), section("y", block_id="b")], "duplicate block_id 'b'"),
    ("block_id over 255", [section("x", block_id="b" * 256)], "/blocks/0"),
    (
        "unknown property",
        [section("x", colour="red")],
        "unknown property 'colour' [json-pointer:/blocks/0/colour]",
    ),
    (
        "unknown text property",
        [section("x") | {"text": {"type": "mrkdwn", "text": "x", "bold": True}}],
        "'bold'",
    ),
    (
        "more than 50 blocks",
        [{"type": "divider"}] * 51,
        "no more than 50 items allowed [json-pointer:/blocks]",
    ),
    (
        "more than 25 elements",
        [{"type": "actions", "elements": [button(f"a{i}") for i in range(26)]}],
        "/blocks/0",
    ),
]


@pytest.mark.parametrize(("rule", "blocks", "detail"), BAD_BLOCKS, ids=[r for r, _, _ in BAD_BLOCKS])
def test_each_block_rule_is_refused_everywhere(
    fake: FakeSlack, client: WebClient, rule: str, blocks: list[dict[str, Any]], detail: str
) -> None:
    with fake.expect_violations() as seen, pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="C111", text="fallback", blocks=blocks)
    assert err.value.response["error"] == "invalid_blocks"
    assert any(detail in line for line in err.value.response["errors"]), err.value.response["errors"]
    assert any(detail in v.detail for v in seen)

    with fake.expect_violations(), pytest.raises(SlackApiError) as err:
        client.chat_update(channel="C111", ts="1.000100", text="fallback", blocks=blocks)
    assert err.value.response["error"] == "invalid_blocks"
    with fake.expect_violations(), pytest.raises(SlackApiError) as err:
        client.chat_postEphemeral(channel="C111", user="U111", text="fallback", blocks=blocks)
    assert err.value.response["error"] == "invalid_blocks"
    with fake.expect_violations():
        resp = WebhookClient(url=fake.response_url()).send(text="fallback", blocks=blocks)
    assert (resp.status_code, resp.body) == (400, "invalid_blocks")
    assert not fake.messages()  # nothing refused was posted


def test_a_message_slack_takes_passes(fake: FakeSlack, client: WebClient) -> None:
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "h" * 150}},
        section("x" * 3000, block_id="one"),
        {"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2000}] * 10},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}]},
        {"type": "divider"},
        {
            "type": "actions",
            "elements": [button("a", "b" * 75, style="danger", confirm=CONFIRM), button("b")],
        },
        section("y", accessory=button("c", value="v" * 2000)),
        *[{"type": "divider"}] * 43,
    ]
    assert len(blocks) == 50
    assert client.chat_postMessage(channel="C111", text="fallback", blocks=blocks)["ok"]
    assert WebhookClient(url=fake.response_url()).send(text="fallback", blocks=blocks).status_code == 200
    assert not fake.violations


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing:UserWarning")
def test_blocks_need_a_text_fallback(fake: FakeSlack, client: WebClient) -> None:
    with fake.expect_violations(), pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="C111", blocks=[section("x")])
    assert err.value.response["error"] == "no_text"
    with fake.expect_violations():
        resp = WebhookClient(url=fake.response_url()).send(blocks=[section("x")])
    assert (resp.status_code, resp.body) == (400, "no_text")
    with fake.expect_violations():
        resp = WebhookClient(url=fake.response_url()).send(text="")
    assert (resp.status_code, resp.body) == (400, "no_text")
    # deleting a message needs no text
    assert WebhookClient(url=fake.response_url()).send_dict({"delete_original": True}).status_code == 200


def test_views_hold_100_blocks_not_101(fake: FakeSlack, client: WebClient) -> None:
    blocks = [{"type": "divider"}] * 100
    assert client.views_publish(user_id="U111", view={"type": "home", "blocks": blocks})["ok"]
    with fake.expect_violations(), pytest.raises(SlackApiError) as err:
        client.views_publish(user_id="U111", view={"type": "home", "blocks": [*blocks, {"type": "divider"}]})
    assert err.value.response["error"] == "invalid_arguments"
    assert "[json-pointer:/view/blocks]" in err.value.response["errors"][0]
    with fake.expect_violations(), pytest.raises(SlackApiError) as err:
        client.views_publish(
            user_id="U111", view={"type": "home", "blocks": [section("x", block_id="b")] * 2}
        )
    assert err.value.response["error"] == "invalid_arguments"


def test_channels_must_be_ids_where_slack_says_id(fake: FakeSlack, client: WebClient) -> None:
    # chat.postMessage takes a name it knows; an unknown name is channel_not_found (no violation)
    fake.channels["ops"] = "C0OPS"
    assert client.chat_postMessage(channel="#ops", text="x")["channel"] == "C0OPS"
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="#nosuch", text="x")
    assert err.value.response["error"] == "channel_not_found"
    assert not fake.violations
    # chat.update: "Channel containing the message to be updated": an ID
    with fake.expect_violations(), pytest.raises(SlackApiError) as err:
        client.chat_update(channel="#ops", ts="1.2", text="x")
    assert err.value.response["error"] == "channel_not_found"
    with fake.expect_violations(), pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="<#C0OPS|ops>", text="x")
    assert err.value.response["error"] == "channel_not_found"
    with fake.expect_violations(), pytest.raises(SlackApiError) as err:
        client.chat_postEphemeral(channel="C111", user="alice", text="x")
    assert err.value.response["error"] == "user_not_in_channel"


def test_files_upload_v2_channel_id_must_be_an_id(fake: FakeSlack, client: WebClient) -> None:
    with fake.expect_violations() as seen, pytest.raises(SlackApiError) as err:
        client.files_upload_v2(channel="#ops", content="x", filename="report.txt")
    assert err.value.response["error"] == "channel_not_found"
    assert "channel_id must be a conversation ID, got '#ops'" in seen[0].detail
    assert client.files_upload_v2(channel="C111", content="x", filename="report.txt")["ok"]


def test_the_upload_must_be_exactly_length_bytes(fake: FakeSlack, client: WebClient) -> None:
    import urllib.request

    got = client.files_getUploadURLExternal(filename="a.txt", length=5)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    opener.open(urllib.request.Request(got["upload_url"], data=b"1234", method="POST"), timeout=5).read()
    files = [{"id": got["file_id"], "title": "a"}]
    with fake.expect_violations() as seen, pytest.raises(SlackApiError) as err:
        client.files_completeUploadExternal(files=files, channel_id="C111")
    assert err.value.response["error"] == "invalid_arguments"
    assert "4 bytes uploaded, files.getUploadURLExternal said 5" in seen[0].detail

    never = client.files_getUploadURLExternal(filename="b.txt", length=1)  # no upload at all
    with fake.expect_violations(), pytest.raises(SlackApiError):
        client.files_completeUploadExternal(files=[{"id": never["file_id"]}], channel_id="C111")
    with fake.expect_violations(), pytest.raises(SlackApiError) as err:
        client.files_completeUploadExternal(files=[{"id": "F0NEVER"}], channel_id="C111")
    assert err.value.response["error"] == "file_not_found"
    with fake.expect_violations(), pytest.raises(SlackApiError) as err:
        client.files_getUploadURLExternal(filename="c.txt", length=0)
    assert err.value.response["error"] == "invalid_arguments"


def test_expect_violations_demands_one(fake: FakeSlack, client: WebClient) -> None:
    with pytest.raises(AssertionError, match="none did"), fake.expect_violations():
        client.chat_postMessage(channel="C111", text="fine")
    # and a violation outside it is recorded as unexpected (conftest then fails the test and the run)
    assert not [v for v in fake.violations if not v.expected]
