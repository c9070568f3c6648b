"""/docker search against the fake Docker Hub: columns, filters before the limit, bad input, Hub failures,
and the Pull buttons through Slack."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.core.services import Services
from bot.core.settings import Settings
from bot.engine import hub
from bot.render.formatting import ellipsis, human_count
from tests.chat import ChatBot
from tests.conftest import SlackHttpBot
from tests.fakes.hub import FakeHub, default_dataset, hub_for, hub_repo
from tests.fakes.slack_requests import block_actions_body, block_actions_payload, post_signed

COLUMNS = ["NAME", "DESCRIPTION", "STARS", "OFFICIAL", "PULLS"]


# --- helpers -------------------------------------------------------------------------------------
def expected_rows(entries: list[dict[str, Any]]) -> list[list[str]]:
    """The table cells the CLI's rules give for Hub entries (computed here, from the dataset)."""
    return [
        [
            e["repo_name"],
            ellipsis(e["short_description"].replace("\n", " ").replace("\r", " "), 45),
            str(e["star_count"]),
            "[OK]" if e["is_official"] else "",
            human_count(e["pull_count"]),
        ]
        for e in entries
    ]


def table_rows(out: str) -> list[list[str]]:
    """Cut the printed table into cells at the header's column offsets."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("NAME "))
    header = lines[start]
    offsets = [header.index(c) for c in COLUMNS]
    assert offsets == sorted(offsets), header
    rows = []
    for line in lines[start + 1 :]:
        if not line.strip() or line.startswith("["):  # the end of the table: the buttons
            break
        bounds = [*offsets[1:], None]
        rows.append([line[a:b].rstrip() for a, b in zip(offsets, bounds, strict=True)])
    return rows


def matching(term: str, dataset: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    return [e for e in (dataset or default_dataset()) if term in e["repo_name"].lower()]


def search_requests(fake: FakeHub, since: int) -> list[dict[str, str]]:
    return [r.query for r in fake.requests[since:] if r.path.startswith("/v2/search/repositories")]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """U111, the Slack user of these tests, may pull (the operator role)."""
    return settings.model_copy(update={"operators": ("U111",)})


@pytest.fixture
def clean_hub(fake_hub: FakeHub) -> Iterator[FakeHub]:
    """The session's fake Hub, with no fault left over for the next test."""
    fake_hub.clear_faults()
    yield fake_hub
    fake_hub.clear_faults()


_POPULAR = (120, 130, 160, 180, 199, 201, 205, 210, 220, 230, 240, 249)  # pages 2 and 3 at page_size 100


def cache_dataset() -> list[dict[str, Any]]:
    """250 "cache" repos; only those at _POPULAR have >= 1000 stars, none on Hub's first page."""
    return [
        hub_repo(
            f"team{i:03d}/cache-{i}",
            stars=1000 + i if i in _POPULAR else i % 700,
            pulls=i * 1_000_003,
            description=f"cache number {i}",
            tags=[],
        )
        for i in range(250)
    ]


@pytest.fixture
def big_hub(services: Services) -> Iterator[FakeHub]:
    with hub_for(services, cache_dataset()) as fake:
        yield fake


# --- results -------------------------------------------------------------------------------------
def test_search_redis_shows_hub_columns_like_the_cli(chat: ChatBot, clean_hub: FakeHub) -> None:
    since = len(clean_hub.requests)
    out = chat("/docker search redis")
    expected = expected_rows(matching("redis")[:25])
    assert table_rows(out) == expected
    assert any(len(row[1]) == 45 and row[1].endswith("…") for row in expected)  # cut descriptions shown
    assert "Traceback" not in out
    [query] = search_requests(clean_hub, since)
    assert query == {"query": "redis", "page": "1", "page_size": "25"}
    assert clean_hub.requests[-1].headers["user-agent"] == "dockerbot"


def test_official_images_use_their_familiar_name(chat: ChatBot, clean_hub: FakeHub) -> None:
    rows = table_rows(chat("/docker search library/nginx --filter is-official=true"))
    assert rows == expected_rows([e for e in matching("nginx") if e["is_official"]])
    assert rows[0][0] == "nginx" and rows[0][3] == "[OK]"


def test_filters_apply_before_the_limit(chat: ChatBot, clean_hub: FakeHub) -> None:
    wanted = [e for e in matching("redis") if e["star_count"] >= 1000]
    # The engine filters only the first 10 results; the dataset makes that come up short.
    assert len([e for e in matching("redis")[:10] if e["star_count"] >= 1000]) < 10 <= len(wanted)
    rows = table_rows(chat("/docker search redis --limit 10 --filter stars=1000"))
    assert rows == expected_rows(wanted[:10])
    assert all(int(row[2]) >= 1000 for row in rows)


def test_filters_page_through_hub_until_enough_rows(chat: ChatBot, big_hub: FakeHub) -> None:
    dataset = cache_dataset()
    wanted = [e for e in dataset if e["star_count"] >= 1000]
    assert all(dataset.index(e) >= 100 for e in wanted[:10])  # none on Hub's first page
    rows = table_rows(chat("/docker search cache --limit 10 --filter stars=1000"))
    assert rows == expected_rows(wanted[:10])
    # Pages of 100 until 10 rows passed: page 3 is needed for the 10th, and nothing after it.
    queries = search_requests(big_hub, 0)
    assert [(q["page"], q["page_size"]) for q in queries] == [("1", "100"), ("2", "100"), ("3", "100")]


def test_paging_stops_at_the_page_cap(
    chat: ChatBot, big_hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub, "MAX_PAGES", 2)
    out = chat("/docker search cache --limit 5 --filter stars=1240")  # only team249 qualifies, on page 3
    assert "No results for cache on Docker Hub (at least 1,240 stars)." in out
    assert len(search_requests(big_hub, 0)) == 2


def test_is_official_false_leaves_official_images_out(chat: ChatBot, clean_hub: FakeHub) -> None:
    rows = table_rows(chat("/docker search redis --filter is-official=false --limit 30"))
    assert rows == expected_rows([e for e in matching("redis") if not e["is_official"]][:30])
    assert "[OK]" not in {row[3] for row in rows}


def test_no_trunc_shows_whole_descriptions(chat: ChatBot, clean_hub: FakeHub) -> None:
    rows = table_rows(chat("/docker search redis --no-trunc --limit 3"))
    assert [row[1] for row in rows] == [e["short_description"] for e in matching("redis")[:3]]


def test_no_results(chat: ChatBot, clean_hub: FakeHub) -> None:
    assert "No results for zzz-nothing on Docker Hub." in chat("/docker search zzz-nothing")


# --- bad input: the engine's own texts, and nothing sent to Hub ---------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ["--filter", "stars=x"],
        ["--filter", "is-official=x"],
        ["--filter", "foo=bar"],
        ["--filter", "foo"],
        ["--limit", "101"],
        ["--filter", "IS-OFFICIAL=True"],  # the CLI lower-cases the key; "True" is still no bool
    ],
)
def test_bad_input_gets_the_engines_error_text(
    chat: ChatBot, clean_hub: FakeHub, docker_cli: Any, args: list[str]
) -> None:
    # Every case fails before the daemon would ask a registry, so the real CLI is the oracle offline.
    cli = docker_cli("search", *args, "redis", check=False, timeout=30)
    assert cli.returncode != 0
    engine_text = cli.stderr.strip().splitlines()[0].removeprefix("Error response from daemon: ")
    since = len(clean_hub.requests)
    out = chat("/docker search " + " ".join([*args, "redis"]))
    # Engines before 23 capitalize their errors ("Invalid filter"); current ones do not, nor does the bot.
    assert _core(engine_text).lower() in out.lower(), (engine_text, out)
    assert out.strip()[0].islower()
    assert clean_hub.requests[since:] == []


def _core(text: str) -> str:
    """The engine's message without Go's wrapped detail (`: strconv.Atoi: …`) or the CLI's flag prefix."""
    text = text.split(": strconv.", 1)[0]
    return text.split("flag: ", 1)[-1]


def test_a_term_with_a_scheme_is_refused(chat: ChatBot, clean_hub: FakeHub) -> None:
    # moby 29's text (daemon/server/router/image); the 20.10 engine says `Invalid repository name (ex: …)`.
    since = len(clean_hub.requests)
    out = chat("/docker search https://hub.docker.com/redis")
    assert out.strip() == (
        "invalid repository name: repository name (https://hub.docker.com/redis) should not have a scheme"
    )
    assert clean_hub.requests[since:] == []


def test_conflicting_booleans_are_refused(chat: ChatBot, clean_hub: FakeHub) -> None:
    # The engine lists the values in Go map order (either way round); the bot keeps the typed order.
    out = chat("/docker search redis --filter is-official=true --filter is-official=false")
    assert out.strip() == "invalid filter 'is-official=[true false]'"


def test_limit_zero_is_refused(chat: ChatBot, clean_hub: FakeHub) -> None:
    since = len(clean_hub.requests)
    assert "limit 0 is outside the range of [1, 100]" in chat("/docker search redis --limit 0")
    assert clean_hub.requests[since:] == []


def test_other_registries_are_not_searched(chat: ChatBot, clean_hub: FakeHub) -> None:
    since = len(clean_hub.requests)
    assert "quay.io is another registry" in chat("/docker search quay.io/redis")
    assert clean_hub.requests[since:] == []
    assert table_rows(chat("/docker search docker.io/redis --limit 2")) == expected_rows(
        matching("redis")[:2]
    )


# --- Hub failures --------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [500, 502, 503])
def test_hub_server_errors_get_a_short_reply(chat: ChatBot, clean_hub: FakeHub, status: int) -> None:
    clean_hub.fail(status, path="/v2/search")
    out = chat("/docker search redis")
    assert out.strip() == f"Docker Hub answered {status}; try again in a minute."
    assert table_rows(chat("/docker search redis --limit 1")) == expected_rows(matching("redis")[:1])


def test_rate_limit_says_when_to_retry(chat: ChatBot, clean_hub: FakeHub) -> None:
    retry = int(time.time()) + 170
    clean_hub.fail(429, retry_after_ts=retry)
    out = chat("/docker search redis").strip()
    clock = datetime.fromtimestamp(retry, UTC).strftime("%H:%M UTC")
    assert out == f"Docker Hub is rate-limiting us; try again after {clock} (in 3 min)."


def test_rate_limit_text_reads_retry_after_seconds_and_dates() -> None:
    now = 1_760_000_000.0
    assert hub.rate_limit_text({"Retry-After": "45"}, now).endswith("(in 45 s).")
    date = "Thu, 09 Oct 2025 10:00:00 GMT"  # 1_760_004_000: 66 min 40 s after `now`
    assert hub.rate_limit_text({"Retry-After": date}, now) == (
        "Docker Hub is rate-limiting us; try again after 10:00 UTC (in 1 h 7 min)."
    )
    assert hub.rate_limit_text({}, now) == "Docker Hub is rate-limiting us; try again in a minute."


def test_stalled_hub_times_out(chat: ChatBot, clean_hub: FakeHub, services: Services) -> None:
    original = services.settings
    services.settings = original.model_copy(update={"hub_timeout": 0.5})
    clean_hub.stall(3, times=1)
    started = time.monotonic()
    try:
        out = chat("/docker search redis")
    finally:
        services.settings = original
    assert out.strip() == "Docker Hub did not answer within 0.5 s."
    assert time.monotonic() - started < 2.5


def test_hub_down_is_named(chat: ChatBot, services: Services) -> None:
    with FakeHub() as gone:
        url = gone.url
    original = services.settings
    services.settings = original.model_copy(update={"hub_url": url})
    try:
        out = chat("/docker search redis")
    finally:
        services.settings = original
    assert out.strip() == f"Cannot reach Docker Hub at {url}: connection refused."


def test_hub_refusing_is_a_short_reply(chat: ChatBot, services: Services) -> None:
    # A URL prefix under which the fake answers 404 JSON for every search: not a Hub at all.
    with hub_for(services, [], path="/nothing"):
        out = chat("/docker search redis").strip()
    assert out == "Docker Hub refused the search request (404: 404 page not found)."


# --- through Slack -------------------------------------------------------------------------------
def _buttons(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [el for b in blocks if b["type"] == "actions" for el in b["elements"]]


def _check_limits(blocks: list[dict[str, Any]]) -> None:
    assert len(blocks) <= 50
    for block in blocks:
        if block["type"] == "actions":
            assert len(block["elements"]) <= 25
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= 3000


def test_slack_reply_has_a_pull_button_per_result(slack_http: SlackHttpBot, clean_hub: FakeHub) -> None:
    slack_http.command("search redis", tag="search")
    [call] = slack_http.slack.wait_for("response_url", lambda c: c.tag == "search", timeout=10)
    assert call.status == 200, call.short()
    blocks = call.body["blocks"]
    _check_limits(blocks)
    names = [e["repo_name"] for e in matching("redis")[:25]]
    assert [(b["action_id"], b["value"]) for b in _buttons(blocks)] == [
        (f"dockerbot:pull.start#{i}", name) for i, name in enumerate(names)
    ]  # Slack wants every action_id of a message unique (the strict fake refuses duplicates)
    assert [b["text"]["text"] for b in _buttons(blocks)] == [f"Pull {name}" for name in names]


def test_slack_reply_with_100_results_stays_within_block_kit_limits(
    slack_http: SlackHttpBot, big_hub: FakeHub
) -> None:
    slack_http.command("search cache --limit 100 --no-trunc", tag="hundred")
    [call] = slack_http.slack.wait_for("response_url", lambda c: c.tag == "hundred", timeout=10)
    assert call.status == 200, call.short()  # the fake Slack rejects over-limit blocks with 400
    blocks = call.body["blocks"]
    _check_limits(blocks)
    assert len(_buttons(blocks)) == 100
    assert len([b for b in blocks if b["type"] == "actions"]) == 4


def test_pressing_pull_reaches_the_pull_flow(
    slack_http: SlackHttpBot, clean_hub: FakeHub, services: Services, docker_cli: Any
) -> None:
    pull = services.command("pull")
    pull_landed = pull is not None and "pull.start" in pull.actions
    if pull_landed:  # start from an engine without alpine, so its arrival proves the pull ran
        docker_cli("rmi", "-f", "alpine:latest", check=False)
        assert docker_cli("image", "inspect", "alpine:latest", check=False).returncode != 0
    slack_http.command("search alpine", tag="found")
    [call] = slack_http.slack.wait_for("response_url", lambda c: c.tag == "found", timeout=10)
    button = next(b for b in _buttons(call.body["blocks"]) if b["value"] == "alpine")
    message = {"text": call.body["text"], "blocks": call.body["blocks"]}
    payload = block_actions_payload(
        button["action_id"],
        button["value"],
        response_url=slack_http.slack.response_url("press"),
        message=message,
    )
    status, _ = post_signed(slack_http.url, block_actions_body(payload), slack_http.secret)
    assert status == 200
    if not pull_landed:
        # The pull handler has not landed: the press still reaches the router, which answers.
        [answer] = slack_http.slack.wait_for("response_url", lambda c: c.tag == "press", timeout=10)
        assert "no longer supported" in answer.body["text"]
        return
    # The pull flow: a live message about alpine, and the image on the engine afterwards.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if docker_cli("image", "inspect", "alpine:latest", check=False).returncode == 0:
            break
        time.sleep(0.5)
    assert docker_cli("image", "inspect", "alpine:latest", check=False).returncode == 0
    pull_messages = [
        json.dumps(c.body)
        for c in slack_http.slack.calls()
        if c.method in ("chat.postMessage", "chat.update") or c.tag == "press"
    ]
    assert any("alpine" in text for text in pull_messages)


def test_third_party_text_cannot_ping_or_break_the_table(
    slack_http: SlackHttpBot, services: Services
) -> None:
    sneaky = hub_repo("evil/redis", stars=1, pulls=2, description="<!channel> & ```x``` <http://e.com|hi>")
    with hub_for(services, [sneaky]):
        slack_http.command("search redis", tag="sneaky")
        [call] = slack_http.slack.wait_for("response_url", lambda c: c.tag == "sneaky", timeout=10)
    [table] = [b["text"]["text"] for b in call.body["blocks"] if b["type"] == "section"]
    assert "<" not in table and ">" not in table
    assert "&lt;!channel&gt; &amp; `\u200b`\u200b`x" in table
    assert table.startswith("```") and table.endswith("```") and table.count("```") == 2


def test_is_automated_true_finds_nothing_without_asking_hub(chat: ChatBot, clean_hub: FakeHub) -> None:
    since = len(clean_hub.requests)
    out = chat("/docker search redis --filter is-automated=true")
    assert out.strip() == "No results for redis on Docker Hub."
    assert clean_hub.requests[since:] == []
