"""Slack's size limits, applied in one place: handlers build messages of any length (the terminal
shows them whole) and the Slack adapter fits them here before they are sent.

Slack refuses a message of more than 50 blocks (invalid_blocks; Block Kit reference, "Blocks").
A long message is shortened in its body: the leading header, and the trailing context and
actions blocks (a card's Confirm and Cancel buttons) always stay, and a context line says how
much was left out. A message says which end of its body matters (`Message.keep`): the start for
tables, the end for a pull's output, where the newest lines are.
"""

from __future__ import annotations

from dataclasses import replace

from bot.render.messages import Block, Message, context

MAX_MESSAGE_BLOCKS = 50
_FOOTER_TYPES = {"context", "actions"}


def fit(message: Message) -> Message:
    blocks = message.blocks
    if len(blocks) <= MAX_MESSAGE_BLOCKS:
        return message
    head = 1 if blocks[0].get("type") == "header" else 0
    tail = 0
    while tail < len(blocks) - head and blocks[len(blocks) - 1 - tail].get("type") in _FOOTER_TYPES:
        tail += 1
    body = blocks[head : len(blocks) - tail]
    room = MAX_MESSAGE_BLOCKS - head - tail - 1  # one block for the note
    if room < 1:  # all header and footer: keep the first blocks, which Slack still takes
        return replace(message, blocks=blocks[:MAX_MESSAGE_BLOCKS])
    left_out = len(body) - room
    if message.keep == "end":
        note = context(f"… {left_out} earlier blocks not shown here.")
        kept: list[Block] = [note, *body[-room:]]
    else:
        note = context(f"… {left_out} more blocks not shown here.")
        kept = [*body[:room], note]
    return replace(message, blocks=[*blocks[:head], *kept, *blocks[len(blocks) - tail :]])
