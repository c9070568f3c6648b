"""Slack's 50-block limit is the Slack adapter's business (bot/slack/limits.py): what it keeps."""

from __future__ import annotations

from bot.render.messages import Message, actions, button, code_blocks, context, header, section
from bot.slack.limits import MAX_MESSAGE_BLOCKS, fit


def _texts(message: Message) -> list[str]:
    return [
        b.get("text", {}).get("text", "") if b["type"] != "context" else b["elements"][0]["text"]
        for b in message.blocks
    ]


def test_a_short_message_is_sent_as_it_is() -> None:
    message = Message(text="t", blocks=[header("H"), section("a"), context("c")])
    assert fit(message) is message


def test_a_long_table_keeps_its_start_its_header_and_its_footer() -> None:
    body = [section(f"row {i}") for i in range(80)]
    message = Message(text="t", blocks=[header("Hosts"), *body, context("3 up")])
    fitted = fit(message)
    assert len(fitted.blocks) == MAX_MESSAGE_BLOCKS
    texts = _texts(fitted)
    assert texts[0] == "Hosts" and texts[-1] == "3 up"
    assert texts[1:4] == ["row 0", "row 1", "row 2"]
    assert texts[-2] == "… 33 more blocks not shown here."
    assert len(message.blocks) == 82, "the handler's message itself is untouched (the terminal shows it all)"


def test_a_long_pull_keeps_its_newest_lines() -> None:
    lines = "\n".join(f"layer {i}: Pull complete" for i in range(8000))
    message = Message(text="t", blocks=[*code_blocks(lines), context("Pulled")], keep="end")
    assert len(message.blocks) > MAX_MESSAGE_BLOCKS
    fitted = fit(message)
    assert len(fitted.blocks) == MAX_MESSAGE_BLOCKS
    texts = _texts(fitted)
    assert texts[0].startswith("… ") and "earlier blocks not shown" in texts[0]
    assert "layer 7999: Pull complete" in texts[-2] and texts[-1] == "Pulled"


def test_a_card_never_loses_its_buttons() -> None:
    buttons = actions(button("Confirm", "rmi.confirm", "x"), button("Cancel", "rmi.cancel", "x"))
    message = Message(text="t", blocks=[header("Remove?"), *[section(f"{i}") for i in range(60)], buttons])
    fitted = fit(message)
    assert len(fitted.blocks) == MAX_MESSAGE_BLOCKS
    assert fitted.blocks[-1] == buttons
