"""/docker tags against the fake Docker Hub: columns from the dataset, attestations left out, bad names."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from bot.core.services import Services
from bot.render.formatting import created_since, human_size
from tests.chat import ChatBot
from tests.conftest import SlackHttpBot
from tests.fakes.hub import FakeHub, default_dataset, hub_for, hub_repo

COLUMNS = ["TAG", "COMPRESSED SIZE", "LAST PUSHED", "ARCHITECTURES"]


def hub_tags(repo_name: str) -> list[dict[str, Any]]:
    """The dataset's tags for a repo, most recently pushed first (Hub's `ordering=last_updated`)."""
    entry = next(e for e in default_dataset() if e["repo_name"] == repo_name)
    return sorted(entry["tags"], key=lambda t: t["last_updated"], reverse=True)


def expected_rows(tags: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for t in tags:
        pushed = datetime.fromisoformat(t["tag_last_pushed"]).timestamp()
        platforms = [
            i["architecture"] + (f"/{i['variant']}" if i["variant"] else "")
            for i in t["images"]
            if i["architecture"] != "unknown"
        ]
        rows.append([t["name"], human_size(t["full_size"]), created_since(pushed), ", ".join(platforms)])
    return rows


def table_rows(out: str) -> list[list[str]]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("TAG "))
    offsets = [lines[start].index(c) for c in COLUMNS]
    rows = []
    for line in lines[start + 1 :]:
        if not line.strip() or line.startswith("["):
            break
        rows.append([line[a:b].rstrip() for a, b in zip(offsets, [*offsets[1:], None], strict=True)])
    return rows


@pytest.fixture
def clean_hub(fake_hub: FakeHub) -> Iterator[FakeHub]:
    fake_hub.clear_faults()
    yield fake_hub
    fake_hub.clear_faults()


def test_tags_redis_shows_size_push_time_and_architectures(chat: ChatBot, clean_hub: FakeHub) -> None:
    since = len(clean_hub.requests)
    out = chat("/docker tags redis --limit 5")
    tags = hub_tags("redis")
    assert any(i["architecture"] == "unknown" for i in tags[0]["images"])  # the dataset has attestations
    assert table_rows(out) == expected_rows(tags[:5])
    assert "unknown" not in out
    [req] = clean_hub.requests[since:]
    assert req.path == "/v2/repositories/library/redis/tags/"
    assert req.query == {"page_size": "5", "ordering": "last_updated"}
    # Each tag can be pulled from the reply.
    assert " ".join(f"[Pull redis:{t['name']}]" for t in tags[:5]) in out


def test_every_spelling_of_an_official_image_lists_the_same_tags(chat: ChatBot, clean_hub: FakeHub) -> None:
    outputs = {
        name: chat(f"/docker tags {name} --limit 3")
        for name in ("redis", "library/redis", "docker.io/library/redis", "index.docker.io/redis")
    }
    assert len(set(outputs.values())) == 1
    assert table_rows(outputs["redis"]) == expected_rows(hub_tags("redis")[:3])


def test_user_repository_and_default_limit(chat: ChatBot, clean_hub: FakeHub) -> None:
    tags = hub_tags("bitnami/redis")
    assert len(tags) < 10
    assert table_rows(chat("/docker tags bitnami/redis")) == expected_rows(tags)
    assert table_rows(chat("/docker tags openresty/openresty --limit 2"))[0][3] == "amd64"


def test_unknown_repository_gets_a_clear_reply(chat: ChatBot, clean_hub: FakeHub) -> None:
    out = chat("/docker tags nosuch/thing")
    assert out.strip() == "Docker Hub has no public repository nosuch/thing."


@pytest.mark.parametrize(
    ("name", "reply"),
    [
        ("redis:7", "Give a repository without a tag or digest, e.g. /docker tags redis."),
        (
            "quay.io/coreos/etcd",
            "quay.io is not Docker Hub; only Docker Hub repositories can list tags here.",
        ),
        ("a/b/c", "a/b/c is not a Docker Hub repository: Hub names are NAME or NAMESPACE/NAME."),
    ],
)
def test_names_that_are_not_hub_repositories(
    chat: ChatBot, clean_hub: FakeHub, name: str, reply: str
) -> None:
    since = len(clean_hub.requests)
    assert chat(f"/docker tags {name}").strip() == reply
    assert clean_hub.requests[since:] == []


@pytest.mark.parametrize("name", ["Redis", "redis::7", "-redis"])
def test_malformed_names_get_the_clis_text(
    chat: ChatBot, clean_hub: FakeHub, docker_cli: Any, name: str
) -> None:
    # The CLI checks references before any network call, so `docker pull` is an offline oracle.
    cli = docker_cli("pull", "--", name, check=False, timeout=30)
    assert cli.returncode != 0
    since = len(clean_hub.requests)
    out = chat(f"/docker tags -- {name}")
    assert out.strip().startswith("invalid reference format")
    assert out.strip() in cli.stderr, (out, cli.stderr)
    assert clean_hub.requests[since:] == []


@pytest.mark.parametrize("limit", [0, 101])
def test_limit_outside_the_range(chat: ChatBot, clean_hub: FakeHub, limit: int) -> None:
    since = len(clean_hub.requests)
    out = chat(f"/docker tags redis --limit {limit}")
    assert out.strip() == f"limit {limit} is outside the range of [1, 100]"
    assert clean_hub.requests[since:] == []


def test_hub_failures_on_tags(chat: ChatBot, clean_hub: FakeHub) -> None:
    clean_hub.fail(503, path="/tags")
    assert chat("/docker tags redis").strip() == "Docker Hub answered 503; try again in a minute."
    clean_hub.fail(429)
    assert chat("/docker tags redis").startswith("Docker Hub is rate-limiting us; try again after ")
    assert table_rows(chat("/docker tags redis --limit 1")) == expected_rows(hub_tags("redis")[:1])


def test_a_repository_without_tags(chat: ChatBot, services: Services) -> None:
    with hub_for(services, [hub_repo("empty/repo", tags=[])]):
        out = chat("/docker tags empty/repo")
    assert out.strip() == "Docker Hub lists no tags for empty/repo."


def test_slack_takes_the_reply_with_a_pull_button_per_tag(
    slack_http: SlackHttpBot, clean_hub: FakeHub
) -> None:
    """Slack refuses a message whose action_ids repeat (the strict fake does too)."""
    slack_http.command("tags redis --limit 5", tag="tags")
    [call] = slack_http.slack.wait_for("response_url", lambda c: c.tag == "tags", timeout=10)
    assert call.ok, call.short()
    buttons = [el for b in call.body["blocks"] if b["type"] == "actions" for el in b["elements"]]
    assert [b["value"] for b in buttons] == [f"redis:{t['name']}" for t in hub_tags("redis")[:5]]
    assert len({b["action_id"] for b in buttons}) == 5
