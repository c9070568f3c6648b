"""Issue 15: what an attack on the served bot got through, each through signed requests to the
served bot (HTTP mode, two hosts, per-host roles) in front of a real engine."""

from __future__ import annotations

import http.client
import io
import json
import logging
import signal
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from bot.core.services import Services
from bot.core.settings import Settings
from bot.engine.hosts import DockerHost
from bot.jobs.scheduler import Scheduler
from bot.logs import make_handler
from bot.render.messages import Message, actions, button, plain
from bot.sandbox import Engine
from bot.state.delivery import Delivery
from handlers.images import Listing, page_message, paginate
from tests.botprocess import start_bot
from tests.conftest import SlackHttpBot
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_requests import (
    APP_ID,
    app_home_opened_payload,
    block_actions_body,
    block_actions_payload,
    button_labelled,
    post_signed,
    signed_headers,
    slash_command_body,
    slash_command_payload,
)

CHANNEL = "CHARD"
ACCESS = {
    "channels": [CHANNEL],
    "default_role": "none",
    "roles": {"admin": ["S0ADM"], "viewer": ["ULOCAL", "UPROD"]},  # admins by user group
    "hosts": {"local": {"admin": ["ULOCAL"], "viewer": ["ULV"]}, "prod": {"admin": ["UPROD"]}},
}


@pytest.fixture
def settings(request: pytest.FixtureRequest, settings: Settings, engine: Engine, tmp_path: Path) -> Settings:
    path = tmp_path / "dockerbot.yml"
    config = {
        "default_host": "local",
        "hosts": {"local": {"url": engine.docker_host}, "prod": {"url": engine.docker_host}},
        "access": ACCESS,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    marker = request.node.get_closest_marker("settings")
    return settings.model_copy(update={"config": path, **(marker.kwargs if marker else {})})


@pytest.fixture
def fake_slack(fake_slack: FakeSlack) -> FakeSlack:
    fake_slack.set_usergroup("S0ADM", ["UGROUP"])
    return fake_slack


class Quiet:
    def post(self, channel: str, message: Message) -> None:
        pass


@pytest.fixture
def scheduler(services: Services) -> Iterator[Scheduler]:
    scheduler = Scheduler(services, Delivery(services.store.engine, Quiet()))
    services.scheduler = scheduler
    scheduler.start(paused=True)
    try:
        yield scheduler
    finally:
        scheduler.shutdown(wait=False)
        services.scheduler = None


def ask(bot: SlackHttpBot, text: str, user: str, tag: str, channel: str = CHANNEL) -> str:
    return bot.ask(text, user=user, channel=channel, tag=tag)


# ------------------------------------------------------------------ item 2: the role on the object's host


@pytest.mark.parametrize("action", ["pause", "resume", "cancel"])
def test_a_schedule_is_changed_only_by_an_admin_of_its_host(
    action: str, slack_http: SlackHttpBot, scheduler: Scheduler, services: Services
) -> None:
    on_prod = scheduler.add(
        "cleanup", "0 3 * * *", timezone="UTC", channel=CHANNEL, host="prod", params={}, created_by="UPROD"
    )
    fleet = scheduler.add(
        "cleanup", "0 4 * * *", timezone="UTC", channel=CHANNEL, host="all", params={}, created_by="UPROD"
    )
    if action == "resume":
        scheduler.pause(on_prod.id)
        scheduler.pause(fleet.id)
    before = {s.id: s for s in scheduler.list("cleanup")}
    for made in (on_prod, fleet):
        seen = ask(slack_http, f"cleanup {action} {made.id}", "ULOCAL", f"{action}-{made.id}")
        assert "needs the *admin* role on host `prod`" in seen and '"response_type": "ephemeral"' in seen
    assert {s.id: s for s in scheduler.list("cleanup")} == before, "a local admin changed a prod schedule"
    entry = services.store.recent_audit(1)[0]
    assert (entry["action"], entry["user"], entry["host"]) == ("cleanup.refused", "ULOCAL", "prod")
    # An admin of prod does it (naming the host: the command itself is checked on the host it is for).
    done = ask(slack_http, f"cleanup {action} {on_prod.id} --host prod", "UPROD", f"{action}-ok")
    assert {"pause": "Paused", "resume": "Resumed", "cancel": "Cancelled"}[action] in done


@pytest.mark.parametrize("action", ["pause", "cancel"])
def test_a_report_schedule_is_changed_only_by_an_admin_of_its_host(
    action: str, slack_http: SlackHttpBot, scheduler: Scheduler
) -> None:
    on_prod = scheduler.add(
        "report", "0 8 * * 1", timezone="UTC", channel=CHANNEL, host="prod", params={}, created_by="UPROD"
    )
    seen = ask(slack_http, f"report {action} {on_prod.id}", "ULOCAL", f"report-{action}")
    assert "needs the *admin* role on host `prod`" in seen
    assert scheduler.get(on_prod.id) == on_prod, "a local admin changed a prod report schedule"
    listing = ask(slack_http, "report list", "ULV", f"report-list-{action}")
    assert on_prod.id not in listing, "a schedule on a host the asker has no role on was listed"


def test_cleanup_list_shows_only_schedules_on_hosts_the_asker_may_read(
    slack_http: SlackHttpBot, scheduler: Scheduler
) -> None:
    made = {
        host: scheduler.add(
            "cleanup", "0 3 * * *", timezone="UTC", channel=CHANNEL, host=host, params={}, created_by="U1"
        )
        for host in ("local", "prod", "all")
    }
    seen = ask(slack_http, "cleanup list", "ULV", "list-ulv")
    assert made["local"].id in seen and made["prod"].id not in seen and made["all"].id not in seen
    everything = ask(slack_http, "cleanup list", "UPROD", "list-uprod")
    assert all(m.id in everything for m in made.values())


def test_audit_shows_only_the_hosts_the_asker_administers(
    slack_http: SlackHttpBot, services: Services
) -> None:
    for host in ("local", "prod", "all"):
        services.store.audit(
            user="UX", channel=CHANNEL, host=host, action=f"probe.{host}", result="ok", request_id="r"
        )
    local = ask(slack_http, "audit 50", "ULOCAL", "audit-local")
    assert "probe.local" in local and "probe.prod" not in local and "probe.all" not in local
    prod = ask(slack_http, "audit 50 --host prod", "UPROD", "audit-prod")
    assert "probe.prod" in prod and "probe.local" not in prod and "probe.all" not in prod


def press(bot: SlackHttpBot, card: str, label: str, user: str, tag: str, channel: str = CHANNEL) -> str:
    """Press the button `label` of a card, signed, as `user`; what that user was told."""
    blocks = json.loads(card)["blocks"]
    element = button_labelled(blocks, label)
    payload = block_actions_payload(
        element["action_id"],
        element.get("value", ""),
        user_id=user,
        channel_id=channel,
        response_url=bot.slack.response_url(tag),
    )
    since = len(bot.slack.calls("chat.postMessage")) + len(bot.slack.calls("chat.update"))
    assert post_signed(bot.url, block_actions_body(payload), bot.secret)[0] == 200
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        answers = [c for c in bot.slack.calls("response_url") if c.tag == tag]
        if answers:
            return json.dumps(answers[-1].body)
        if len(bot.slack.calls("chat.postMessage")) + len(bot.slack.calls("chat.update")) > since:
            time.sleep(0.2)
            return json.dumps([c.body for c in bot.slack.calls("chat.update")])
        time.sleep(0.05)
    raise AssertionError(f"no answer to {label} from {user}")


def wait_for_groups(bot: SlackHttpBot) -> None:
    deadline = time.monotonic() + 5
    while not bot.slack.calls("usergroups.users.list") and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)


# ----------------------------------------------------- item 5: the user group that grants admin, now


def test_confirm_and_a_new_card_reread_the_group_that_grants_admin(
    slack_http: SlackHttpBot, engine: Engine
) -> None:
    engine.cli("pull", "busybox")
    wait_for_groups(slack_http)
    card = ask(slack_http, "rmi busybox", "UGROUP", "card1")
    assert "Confirm" in card
    slack_http.slack.set_usergroup("S0ADM", [])  # taken out of the admins' group after the card
    answer = press(slack_http, card, "Confirm", "UGROUP", "confirm1")
    assert "needs the *admin* role on host `local`" in answer
    assert engine.cli("image", "inspect", "busybox", check=False).returncode == 0, "removed by a non-admin"
    assert "needs the *admin* role" in ask(slack_http, "rmi busybox", "UGROUP", "card2")
    slack_http.slack.set_usergroup("S0ADM", ["UGROUP"])  # and back in: no wait for the cache either
    assert "Confirm" in ask(slack_http, "rmi busybox", "UGROUP", "card3")


# ---------------------------------------------------------- item 7: a button press is checked like a command


def test_a_pull_button_outside_the_allowed_channels_does_nothing(
    slack_http: SlackHttpBot, engine: Engine
) -> None:
    engine.cli("rmi", "-f", "busybox", check=False)
    wait_for_groups(slack_http)
    card = json.dumps({"blocks": [actions(button("Pull busybox", "pull.start", value="busybox"))]})
    answer = press(slack_http, card, "Pull busybox", "UGROUP", "pull-elsewhere", channel="COTHER")
    assert "does not answer in this channel" in answer
    time.sleep(1)
    assert engine.cli("image", "inspect", "busybox", check=False).returncode != 0, "pulled from outside"


def listing_card(services: Services, host: str) -> str:
    rows = [f"example/row-{i:03d}   latest   {'x' * 90}" for i in range(80)]
    header = "REPOSITORY   TAG   IMAGE ID"
    listing = Listing(host=host, header=header, rows=rows, pages=paginate(header, rows), summary="80 images")
    assert len(listing.pages) > 1
    return json.dumps({"blocks": page_message(listing, services.listings.add(listing), 0).blocks})


@pytest.mark.parametrize(("user", "host"), [("ULV", "prod"), ("UNONE", "local")])
def test_more_pages_need_a_role_on_the_listings_host(
    slack_http: SlackHttpBot, services: Services, user: str, host: str
) -> None:
    answer = press(slack_http, listing_card(services, host), "More", user, f"more-{user}")
    assert f"*viewer* role on host `{host}`" in answer and "example/row-" not in answer
    shown = press(slack_http, listing_card(services, host), "More", "UGROUP", f"more-ok-{user}")
    assert "example/row-0" in shown


# ------------------------------------------------------------- item 6: App Home shows what the role allows


def open_home(bot: SlackHttpBot, user: str) -> str:
    since = len(bot.slack.calls("views.publish"))
    body = json.dumps(app_home_opened_payload(user_id=user, event_id=f"Ev{user}{time.monotonic_ns()}"))
    assert (
        post_signed(bot.url, body, bot.secret, headers_override={"Content-Type": "application/json"})[0]
        == 200
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        published = [c for c in bot.slack.calls("views.publish")[since:] if c.body["user_id"] == user]
        if published:
            return json.dumps(published[0].body["view"]["blocks"])
        time.sleep(0.05)
    raise AssertionError(f"no home published for {user}")


def test_app_home_shows_each_user_what_their_role_allows(
    slack_http: SlackHttpBot, scheduler: Scheduler, monkeypatch: pytest.MonkeyPatch
) -> None:
    def probe(services: Services, host: DockerHost, params: dict) -> Message:
        return plain(f"cleanup summary for {host.name}")

    monkeypatch.setitem(scheduler.runners, "cleanup", probe)
    on_local = scheduler.add(
        "cleanup", "0 3 * * *", timezone="UTC", channel=CHANNEL, host="local", params={}, created_by="U1"
    )
    on_prod = scheduler.add(
        "cleanup", "0 5 * * *", timezone="UTC", channel=CHANNEL, host="prod", params={}, created_by="U1"
    )
    scheduler.run(on_local.id)
    scheduler.run(on_prod.id)  # the latest run: on prod

    nobody = open_home(slack_http, "UNONE")
    assert "You have no role in dockerbot yet" in nobody
    for hidden in ("Hosts", "local", "prod", on_local.id, "cleanup summary"):
        assert hidden not in nobody
    local_viewer = open_home(slack_http, "ULV")
    assert "local (default)" in local_viewer and "1 of 1 up" in local_viewer
    assert on_local.id in local_viewer and "cleanup summary for local" in local_viewer
    assert "prod" not in local_viewer and on_prod.id not in local_viewer
    everyone = open_home(slack_http, "UPROD")
    assert "2 of 2 up" in everyone and on_prod.id in everyone and "cleanup summary for prod" in everyone


# ------------------------------------------------------------------------ item 8: the smaller ones


def nothing_ran(bot: SlackHttpBot, tag: str) -> None:
    time.sleep(0.7)  # time for a wrongly started command to answer, so its absence means something
    assert [c for c in bot.slack.calls("response_url") if c.tag == tag] == []


def raw_post(bot: SlackHttpBot, body: str, headers: list[tuple[str, str]]) -> int:
    url = urllib.parse.urlsplit(bot.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        conn.putrequest("POST", url.path)
        for key, value in [*headers, ("Content-Length", str(len(body)))]:
            conn.putheader(key, value)
        conn.endheaders(body.encode())
        return conn.getresponse().status
    finally:
        conn.close()


def test_a_duplicated_or_malformed_timestamp_is_401_not_500(slack_http: SlackHttpBot) -> None:
    body = slash_command_body(
        "help", user_id="UGROUP", channel_id=CHANNEL, response_url=slack_http.slack.response_url("ts")
    )
    good = signed_headers(body, slack_http.secret)
    stamp = good["X-Slack-Request-Timestamp"]
    twice = [*good.items(), ("X-Slack-Request-Timestamp", stamp)]
    assert raw_post(slack_http, body, twice) == 401
    wrong = [(k, v) for k, v in good.items() if k != "X-Slack-Request-Timestamp"]
    assert raw_post(slack_http, body, [*wrong, ("X-Slack-Request-Timestamp", "1e9")]) == 401
    nothing_ran(slack_http, "ts")
    assert raw_post(slack_http, body, list(good.items())) == 200  # the same request, well-formed


@pytest.mark.settings(slack_team_id="T111", slack_app_id=APP_ID)
def test_pinned_team_and_app_refuse_validly_signed_requests_from_others(slack_http: SlackHttpBot) -> None:
    other_team = slash_command_body(
        "help",
        user_id="UGROUP",
        channel_id=CHANNEL,
        team_id="TOTHER",
        response_url=slack_http.slack.response_url("team"),
    )
    assert post_signed(slack_http.url, other_team, slack_http.secret)[0] == 403
    payload = slash_command_payload(
        "help", user_id="UGROUP", channel_id=CHANNEL, response_url=slack_http.slack.response_url("app")
    )
    other_app = urllib.parse.urlencode({**payload, "api_app_id": "AOTHER"})
    assert post_signed(slack_http.url, other_app, slack_http.secret)[0] == 403
    nothing_ran(slack_http, "team")
    nothing_ran(slack_http, "app")
    assert "/docker help" in ask(slack_http, "help", "UGROUP", "pinned-ok")


def test_a_replayed_body_without_trigger_id_runs_once(slack_http: SlackHttpBot) -> None:
    payload = slash_command_payload(
        "help", user_id="UGROUP", channel_id=CHANNEL, response_url=slack_http.slack.response_url("replay")
    )
    del payload["trigger_id"]
    body = urllib.parse.urlencode(payload)
    stamp = int(time.time())
    for _ in range(3):
        assert post_signed(slack_http.url, body, slack_http.secret, timestamp=stamp)[0] == 200
    slack_http.slack.wait_for("response_url", lambda c: c.tag == "replay")
    time.sleep(1)
    assert len([c for c in slack_http.slack.calls("response_url") if c.tag == "replay"]) == 1


def test_newlines_in_command_text_cannot_forge_log_lines(slack_http: SlackHttpBot) -> None:
    stream = io.StringIO()
    handler = make_handler(stream, "text")
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    forged = (
        "2026-12-03 10:00:00,000 INFO [r-forged] dockerbot.router: command from UADMIN in C1: /docker rmi"
    )
    try:
        for text in (f"images\n{forged}", f"images\r\n{forged}", f"nosuchcommand\u2028{forged}"):
            ask(slack_http, text, "UGROUP", f"forge-{len(text)}-{text[:3]}")
        time.sleep(0.3)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    lines = stream.getvalue().splitlines()  # as a log reader splits them (\u2028 included)
    assert any("r-forged" in line for line in lines), "the text was logged"
    assert not [line for line in lines if line.startswith("2026-12-03 10:00:00,000")], "a forged line"
    assert all(line[:4].isdigit() or line.startswith("    ") for line in lines)


def test_half_open_connections_are_closed_after_the_header_timeout(
    engine: Engine, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    bot = start_bot(engine, fake_slack, tmp_path, DOCKERBOT_HTTP_HEADER_TIMEOUT="1")
    url = urllib.parse.urlsplit(bot.url)
    conns: list[socket.socket] = []
    try:
        for i in range(300):  # connected and silent, or stuck in the middle of the headers
            conn = socket.create_connection((url.hostname, url.port), timeout=10)
            if i % 2:
                conn.sendall(b"POST /slack/events HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            conns.append(conn)
        time.sleep(2.5)
        for conn in conns:
            conn.settimeout(3)
            data = conn.recv(200)  # the server's 408 and close, or just its close; never a wait
            assert data in (
                b"",
                b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            )
        # A request that is quick enough is served as before.
        assert post_signed(bot.url, "x=1", "not-the-secret")[0] == 401
    finally:
        for conn in conns:
            conn.close()
        bot.proc.send_signal(signal.SIGTERM)
        bot.proc.wait(timeout=30)


@pytest.mark.settings(max_schedules_per_channel=3)
def test_schedules_are_capped_per_channel_and_refuse_short_intervals(
    slack_http: SlackHttpBot, scheduler: Scheduler
) -> None:
    wait_for_groups(slack_http)
    for n, cron in enumerate(["* * * * *", "*/4 * * * *", "0,1 3 * * *", "* 3 1 * *"]):
        seen = ask(slack_http, f'cleanup schedule "{cron}"', "UGROUP", f"short-{n}")
        assert "the shortest interval allowed is 5 min" in seen, seen
    assert scheduler.list() == []
    for n, cron in enumerate(["*/5 * * * *", "0 3 * * *", "0 4 * * 1"]):
        assert "Scheduled cleanup" in ask(slack_http, f'cleanup schedule "{cron}"', "UGROUP", f"ok-{n}")
    seen = ask(slack_http, 'report schedule "0 8 * * *"', "UGROUP", "one-too-many")
    assert "already has 3 schedules, the most allowed" in seen
    assert len(scheduler.list()) == 3
    other = ask(slack_http, 'cleanup schedule "0 3 * * *" --channel C0OTHER', "UGROUP", "other-channel")
    assert "Scheduled cleanup" in other, "the cap is per channel"


def test_readyz_and_metrics_are_not_on_the_public_port(
    engine: Engine, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    bot = start_bot(engine, fake_slack, tmp_path)
    public = bot.url.removesuffix("/slack/events")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def status(url: str) -> int:
        try:
            with opener.open(url, timeout=10) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as error:
            return error.code

    try:
        assert bot.health and bot.health != public
        for path in ("/readyz", "/metrics", "/healthz"):
            assert status(public + path) == 404, path
            assert status(bot.health + path) == 200, path
    finally:
        bot.proc.send_signal(signal.SIGTERM)
        bot.proc.wait(timeout=30)
