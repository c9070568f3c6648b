"""/docker inspect REF [--json]: a summary card of one image, or the engine's full JSON.

REF is resolved by bot.engine.images (any unique ID prefix, names normalized); an ambiguous prefix
lists the candidates instead of the engine's bare "No such image".
"""

from __future__ import annotations

import json
from typing import Any

import docker

from bot.core.commands import ArgParser, Command, Reply, Request
from bot.engine.images import (
    AmbiguousImage,
    ImageIndex,
    NoSuchImage,
    container_name,
    images_in_use,
    list_images,
    shown,
)
from bot.render.formatting import created_since, human_size, short_id
from bot.render.messages import (
    MAX_SECTION_TEXT,
    Block,
    File,
    Message,
    code_blocks,
    context,
    fields,
    header,
    section,
)
from bot.render.mrkdwn import code as mrkdwn_code
from bot.render.mrkdwn import slack_len
from bot.render.secrets import mask_secrets

MAX_FIELD = 2000  # Slack's limit for one section field
MAX_CANDIDATES = 40


def add_arguments(parser: ArgParser) -> None:
    parser.add_argument(
        "ref", metavar="REF", help="name[:tag], name@digest, a full image ID or any unique ID prefix"
    )
    parser.add_argument("--json", action="store_true", help="the engine's full JSON")


def run(req: Request, reply: Reply) -> None:
    api = req.host.api
    try:
        image = ImageIndex(list_images(api, all=True)).resolve(req.args.ref)
    except AmbiguousImage as error:
        reply.send(ambiguous_message(error))
        return
    try:
        data = api.inspect_image(image["Id"])
    except docker.errors.ImageNotFound:  # removed since we listed it
        raise NoSuchImage(req.args.ref) from None
    # A chat message lives on elsewhere: credentials are masked by value, wherever the image repeats them.
    data = mask_secrets(data)
    if req.args.json:
        reply.send(json_message(data))
    else:
        reply.send(card(data, image, images_in_use(api).get(image["Id"], [])))


# --------------------------------------------------------------------------------------------- card


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _command(value: list[str] | str | None) -> str:
    if not value:
        return "—"
    text = _clip(json.dumps(value), MAX_FIELD - 50)
    # A backtick would end inline code early: such a value goes in a code block (mrkdwn.code).
    return mrkdwn_code(text) if "`" in text else f"`{text}`"


def _list_section(title: str, items: list[str], *, code: bool) -> Block:
    """`title` then the items, one per line, cut with "… and N more" to fit one section."""
    budget = MAX_SECTION_TEXT - len(f"*{title}*\n``````") - 30
    kept: list[str] = []
    size = 0
    for item in items:
        line = item if code else f"`{item}`"
        if size + slack_len(line) + 1 > budget:
            break
        kept.append(line)
        size += slack_len(line) + 1
    body = "\n".join(kept)
    more = f"\n… and {len(items) - len(kept)} more" if len(kept) < len(items) else ""
    return section(f"*{title}*\n{mrkdwn_code(body) if code else body}{more}")


def card(data: dict[str, Any], image: dict[str, Any], containers: list[dict[str, Any]]) -> Message:
    config = data.get("Config") or {}
    tags = data.get("RepoTags") or []
    title = tags[0] if tags else f"Image {short_id(data['Id'])}"
    platform = "/".join(p for p in (data.get("Architecture"), data.get("Os"), data.get("Variant")) if p)
    running = sum(1 for c in containers if c.get("State") == "running")
    used_by = (
        f"{len(containers)} container{'s' if len(containers) != 1 else ''} ({running} running)"
        if containers
        else "no container (unused)"
    )
    blocks: list[Block] = [
        header(title),
        fields(
            [
                ("Id", f"`{data['Id']}`"),
                (
                    "Created",
                    f"{data.get('Created', '')} ({created_since(image.get('Created'))})",
                ),
                ("Architecture/Os", platform or "—"),
                ("Size", human_size(data.get("Size") or 0)),
                ("Layers", str(len((data.get("RootFS") or {}).get("Layers") or []))),
                ("Used by", used_by),
                ("Cmd", _command(config.get("Cmd"))),
                ("Entrypoint", _command(config.get("Entrypoint"))),
            ]
        ),
        _list_section("RepoTags", tags or ["<none>"], code=False),
        _list_section("RepoDigests", data.get("RepoDigests") or ["<none>"], code=False),
    ]
    if env := config.get("Env"):
        blocks.append(_list_section("Env", env, code=True))
    if labels := config.get("Labels"):
        blocks.append(_list_section("Labels", [f"{k}={v}" for k, v in sorted(labels.items())], code=True))
    if ports := config.get("ExposedPorts"):
        blocks.append(_list_section("ExposedPorts", sorted(ports), code=False))
    if containers:
        blocks.append(
            _list_section(
                "Containers",
                [f"{container_name(c)} ({c.get('State') or c.get('Status') or '?'})" for c in containers],
                code=True,
            )
        )
    blocks.append(context(f"`/docker inspect {short_id(data['Id'])} --json` shows the engine's full JSON."))
    return Message(text=f"Image {title} ({short_id(data['Id'])})", blocks=blocks)


# --------------------------------------------------------------------------------------------- json


def json_message(data: dict[str, Any]) -> Message:
    """Like `docker image inspect`: a one-element array, 4-space indent (`data` masked by `run`)."""
    text = json.dumps([data], indent=4, ensure_ascii=False)
    name = f"inspect-{short_id(data['Id'])}.json"
    what = (data.get("RepoTags") or [short_id(data["Id"])])[0]
    if slack_len(text) + len("``````") <= MAX_SECTION_TEXT:
        return Message(text=f"docker inspect {what}", blocks=[section(mrkdwn_code(text))])
    return Message(
        text=f"docker inspect {what}: attached as {name}",
        blocks=[
            section(f"The engine's JSON for `{what}` is {len(text):,} characters: attached as `{name}`.")
        ],
        files=[File(name=name, content=text + "\n", title=f"docker inspect {what}")],
    )


# --------------------------------------------------------------------------------------------- ambiguity


def ambiguous_message(error: AmbiguousImage) -> Message:
    lines = error.table().split("\n")
    shown_lines = lines[: MAX_CANDIDATES + 1]
    blocks = [
        section(
            f"Error: `{shown(error.ref)}` is ambiguous: it matches {len(error.candidates)} images. "
            "Use a longer ID prefix or a name:"
        ),
        *code_blocks("\n".join(shown_lines)),
    ]
    if len(lines) > len(shown_lines):
        blocks.append(context(f"… and {len(lines) - len(shown_lines)} more."))
    return Message(text=str(error), blocks=blocks)


COMMAND = Command(
    name="inspect",
    summary="Show an image's details (name, name:tag, name@digest or any unique ID prefix).",
    example="/docker inspect 3f5",
    run=run,
    add_arguments=add_arguments,
)
