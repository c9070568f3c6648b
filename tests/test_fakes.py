"""The fakes in tests/fakes work with the *real* slack_sdk / slack_bolt clients (all offline)."""

from __future__ import annotations

import contextlib
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from slack_bolt import App, BoltRequest
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.webhook import WebhookClient

from tests.fakes.hub import FakeHub, hub_repo, hub_tag
from tests.fakes.slack import PROXY_ENV_VARS, FakeSlack
from tests.fakes.slack_requests import (
    block_actions_body,
    block_actions_payload,
    post_signed,
    signed_headers,
    slash_command_body,
    slash_command_payload,
)
from tests.fakes.slack_rules import RESPONSE_URL_TTL

APP_TOKEN = "xapp-1-A111-111-xxx"
SECRET = "test-signing-secret"
NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # slack_sdk routes even 127.0.0.1 through HTTPS_PROXY & co. (it ignores NO_PROXY), and Bolt
    # switches to OAuth mode when SLACK_CLIENT_ID/SECRET are set.
    for var in (*PROXY_ENV_VARS, "SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET", "SLACK_BOT_TOKEN"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as f:
        yield f


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub() as h:
        yield h


def get_json(url: str, timeout: float = 5.0) -> tuple[int, dict[str, str], Any]:
    try:
        with NO_PROXY_OPENER.open(url, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode()
        return e.code, dict(e.headers), body


# ---------------------------------------------------------------------------- Web API


def test_web_client_post_update_and_429_retry(fake: FakeSlack) -> None:
    client = WebClient(
        base_url=fake.api_url,
        token="xoxb-test",
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)],
    )
    assert client.auth_test()["user_id"] == "UBOT"

    posted = client.chat_postMessage(channel="C111", text="hello", blocks=[{"type": "divider"}])
    assert posted["ok"] and posted["channel"] == "C111"
    client.chat_update(channel="C111", ts=posted["ts"], text="edited")
    [post] = fake.wait_for("chat.postMessage")
    [update] = fake.wait_for("chat.update")
    assert post.body["blocks"] == [{"type": "divider"}]
    assert post.token == "xoxb-test" and post.headers["authorization"] == "Bearer xoxb-test"
    assert update.body["ts"] == posted["ts"] and update.body["text"] == "edited"
    assert fake.message("C111", posted["ts"])["text"] == "edited"  # type: ignore[index]
    second = client.chat_postMessage(channel="C111", text="again")
    assert float(second["ts"]) > float(posted["ts"])

    fake.reset()
    fake.fail("chat.postMessage", 429, retry_after=1)
    started = time.monotonic()
    resp = client.chat_postMessage(channel="C111", text="after rate limit")
    assert resp["ok"]
    assert time.monotonic() - started >= 1.0  # the SDK honoured Retry-After
    attempts = fake.calls("chat.postMessage")
    assert [c.status for c in attempts] == [429, 200]
    assert attempts[0].error == "ratelimited"
    assert len(fake.calls("chat.postMessage", ok=True)) == 1


def test_web_api_faults_and_methods(fake: FakeSlack) -> None:
    client = WebClient(base_url=fake.api_url, token="xoxb-test")  # default: no 429 retries

    fake.fail("chat.postMessage", error="not_in_channel")
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="C999", text="x")
    assert err.value.response["error"] == "not_in_channel"
    fake.fail("chat.postMessage", 500, times=2)
    for _ in range(2):
        with pytest.raises(SlackApiError) as err:
            client.chat_postMessage(channel="C111", text="x")
        assert err.value.response.status_code == 500
    assert client.chat_postMessage(channel="C111", text="x")["ok"]
    assert [c.ok for c in fake.calls("chat.postMessage")] == [False, False, False, True]

    with fake.expect_violations(), pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="C111", blocks=[{"type": "divider"}] * 51, text="too many")
    assert err.value.response["error"] == "invalid_blocks"

    assert client.chat_postEphemeral(channel="C111", user="U111", text="psst")["message_ts"]
    assert client.chat_delete(channel="C111", ts="1.2")["ok"]
    assert client.views_publish(user_id="U111", view={"type": "home", "blocks": []})["view"]["id"]
    fake.set_usergroup("S0OPS", ["U111", "U222"])
    assert client.usergroups_users_list(usergroup="S0OPS")["users"] == ["U111", "U222"]
    fake.set_user("U222", is_admin=True, profile={"display_name": "ops"})
    assert client.users_info(user="U222")["user"]["is_admin"] is True
    assert client.users_info(user="U333")["user"]["id"] == "U333"
    assert client.api_call("conversations.info", params={"channel": "C111"})["ok"]  # any method: ok
    [info] = fake.calls("conversations.info")
    assert info.body == {"channel": "C111"}

    with pytest.raises(SlackApiError) as err:  # apps.connections.open wants the app-level token
        client.apps_connections_open(app_token="xoxb-test")
    assert err.value.response["error"] == "not_allowed_token_type"
    url = client.apps_connections_open(app_token=APP_TOKEN)["url"]
    assert url.startswith(f"ws://127.0.0.1:{fake.ws_port}/link/?ticket=")

    upload = client.files_upload_v2(channel="C111", content="line1\nline2\n", filename="images.txt")
    assert upload["file"]["name"] == "images.txt"
    [raw] = fake.wait_for("file_upload")
    assert raw.raw == b"line1\nline2\n" and fake.uploads[upload["file"]["id"]] == raw.raw
    [complete] = fake.calls("files.completeUploadExternal")
    assert complete.body["channel_id"] == "C111" and complete.body["files"][0]["id"] == upload["file"]["id"]

    with pytest.raises(
        AssertionError, match=r"(?s)expected 1 call\(s\) to 'chat.scheduleMessage'.*Received 17"
    ):
        fake.wait_for("chat.scheduleMessage", timeout=0.1)


def test_response_url_webhook(fake: FakeSlack) -> None:
    url = fake.response_url("cmd")
    resp = WebhookClient(url=url).send(text="done", response_type="in_channel", replace_original=True)
    assert (resp.status_code, resp.body) == (200, "ok")
    [call] = fake.wait_for("response_url")
    assert call.tag == "cmd" and call.body["text"] == "done" and call.body["replace_original"] is True

    fake.fail("response_url", 500)
    fake.fail("response_url", error="expired_url", status=404)
    assert WebhookClient(url=url).send(text="x").status_code == 500
    assert (WebhookClient(url=url).send(text="x").body, len(fake.calls("response_url", ok=False))) == (
        "expired_url",
        2,
    )
    with fake.expect_violations():
        too_many = WebhookClient(url=url).send(blocks=[{"type": "divider"}] * 51, text="x")
    assert too_many.body == "invalid_blocks"

    # Five messages per response_url (counting the one above), as Slack allows; a sixth is refused.
    for _ in range(4):
        assert WebhookClient(url=url).send(text="page").status_code == 200
    with fake.expect_violations() as seen:
        sixth = WebhookClient(url=url).send(text="page")
    assert (sixth.status_code, sixth.body) == (404, "used_url") and seen[0].error == "used_url"
    fresh = fake.response_url("cmd")
    assert WebhookClient(url=fresh).send(text="page").status_code == 200  # a new URL
    handed_out, used = fake._hooks[urlsplit(fresh).path]  # as if it came 30 minutes and a second ago
    fake._hooks[urlsplit(fresh).path] = (handed_out - RESPONSE_URL_TTL - 1, used)
    with fake.expect_violations():
        assert WebhookClient(url=fresh).send(text="late").body == "expired_url"

    body = slash_command_body("search redis", response_url=url)
    with fake.expect_violations():
        status, text = post_signed(fake.response_url("signed"), body, SECRET)
    assert (status, text) == (400, "invalid_payload")  # a form body is not valid response_url JSON
    [signed] = fake.calls("response_url", ok=False)[-1:]
    assert SignatureVerifier(SECRET).is_valid_request(signed.raw.decode(), signed.headers)


# ---------------------------------------------------------------------------- Socket Mode


def test_socket_mode_client_envelopes_acks_and_reconnect() -> None:
    # short server keepalive: the builtin client must answer the server's pings too
    with FakeSlack(ws_ping_interval=0.1, ws_ping_timeout=2.0) as fake:
        client = SocketModeClient(
            app_token=APP_TOKEN, web_client=WebClient(base_url=fake.api_url, token="xoxb-test")
        )
        received: list[SocketModeRequest] = []

        def listener(c: Any, req: SocketModeRequest) -> None:
            received.append(req)
            c.send_socket_mode_response(
                SocketModeResponse(envelope_id=req.envelope_id, payload={"text": "ok"})
            )

        client.socket_mode_request_listeners.append(listener)
        try:
            client.connect()
            fake.wait_connected()
            [opened] = fake.calls("apps.connections.open")
            assert opened.token == APP_TOKEN

            payload = slash_command_payload("images", response_url=fake.response_url())
            eid = fake.send_envelope("slash_commands", payload)
            assert fake.wait_for_ack(eid) == {"envelope_id": eid, "payload": {"text": "ok"}}
            assert received[0].type == "slash_commands" and received[0].payload["text"] == "images"
            assert received[0].accepts_response_payload is True

            deadline = time.monotonic() + 3
            while fake.ws_latency == 0.0 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert fake.ws_latency > 0.0  # the client answered the server's keepalive ping
            assert (fake.connections, fake.active_connections) == (1, 1)
            assert client.current_session is not None
            assert client.current_session.last_ping_pong_time is not None  # the client's ping was echoed

            fake.send_disconnect("refresh_requested")
            fake.wait_connected(connections=2)
            assert len(fake.calls("apps.connections.open")) == 2
            eid2 = fake.send_envelope("events_api", {"event": {"type": "app_home_opened", "user": "U1"}})
            assert fake.wait_for_ack(eid2)["envelope_id"] == eid2
            assert fake.envelopes[-1]["retry_attempt"] == 0
            assert fake.connections == 2
        finally:
            fake.close_client(client)
            with contextlib.suppress(AttributeError):  # slack-sdk 3.47 close race (see brief)
                client.close()


def test_socket_mode_reconnects_after_dropped_connection(fake: FakeSlack) -> None:
    client = SocketModeClient(
        app_token=APP_TOKEN,
        web_client=WebClient(base_url=fake.api_url, token="xoxb-test"),
        ping_interval=0.3,  # the builtin client only notices/reconnects on its monitor tick
    )
    client.socket_mode_request_listeners.append(
        lambda c, req: c.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
    )
    try:
        client.connect()
        fake.wait_connected()
        fake.drop_connection("reset")
        fake.wait_connected(connections=2, timeout=5)
        eid = fake.send_envelope(
            "interactive", block_actions_payload("rmi_confirm", "nginx:1", response_url="x")
        )
        assert fake.wait_for_ack(eid) == {"envelope_id": eid}
        assert fake.envelopes[-1]["accepts_response_payload"] is False
        with pytest.raises(AssertionError, match="no ack for envelope 'nope'"):
            fake.wait_for_ack("nope", timeout=0.05)
    finally:
        fake.close_client(client)


def test_bolt_app_socket_mode_and_http_dispatch(fake: FakeSlack) -> None:
    app = App(client=WebClient(base_url=fake.api_url, token="xoxb-test"), signing_secret=SECRET)

    @app.command("/docker")
    def docker(ack: Any, command: dict[str, Any], respond: Any) -> None:
        ack()
        respond(text=f"ran {command['text']}")

    @app.action("rmi_confirm")
    def confirm(ack: Any, body: dict[str, Any], respond: Any) -> None:
        ack()
        respond(replace_original=True, text=f"removed {body['actions'][0]['value']}")

    # HTTP mode: signed form bodies exactly as Slack sends them
    body = slash_command_body("images", response_url=fake.response_url("http"))
    resp = app.dispatch(BoltRequest(body=body, headers=signed_headers(body, SECRET)))
    assert resp.status == 200
    assert fake.wait_for("response_url", lambda c: c.tag == "http")[0].body["text"] == "ran images"
    stale = signed_headers(body, SECRET, timestamp=int(time.time()) - 600)
    assert app.dispatch(BoltRequest(body=body, headers=stale)).status == 401

    action = block_actions_payload(
        "rmi_confirm",
        "nginx:1.27",
        response_url=fake.response_url("btn"),
        message={
            "blocks": [
                {
                    "type": "actions",
                    "block_id": "b1",
                    "elements": [
                        {
                            "type": "button",
                            "action_id": "rmi_confirm",
                            "text": {"type": "plain_text", "text": "Yes"},
                            "style": "danger",
                        }
                    ],
                }
            ]
        },
    )
    assert action["actions"][0]["block_id"] == "b1" and action["actions"][0]["style"] == "danger"
    abody = block_actions_body(action)
    assert parse_qs(abody)["payload"][0].startswith('{"type":"block_actions"')
    assert app.dispatch(BoltRequest(body=abody, headers=signed_headers(abody, SECRET))).status == 200
    [clicked] = fake.wait_for("response_url", lambda c: c.tag == "btn")
    assert clicked.body == {"replace_original": True, "text": "removed nginx:1.27"}

    # Socket Mode through Bolt's builtin adapter
    handler = SocketModeHandler(app, APP_TOKEN, ping_interval=1)
    try:
        handler.connect()
        eid = fake.send_envelope(
            "slash_commands", slash_command_payload("pull nginx", response_url=fake.response_url("sm"))
        )
        assert fake.wait_for_ack(eid) == {"envelope_id": eid}
        assert fake.wait_for("response_url", lambda c: c.tag == "sm")[0].body["text"] == "ran pull nginx"
    finally:
        fake.close_client(handler)


# ---------------------------------------------------------------------------- Docker Hub


def test_hub_search_pagination(hub: FakeHub) -> None:
    status, headers, page1 = get_json(f"{hub.url}/v2/search/repositories/?query=redis&page_size=25")
    assert status == 200 and headers["X-RateLimit-Limit"] == "180"
    assert page1["count"] == 63 and len(page1["results"]) == 25 and page1["previous"] == ""
    first = page1["results"][0]
    assert first == {
        "repo_name": "redis",
        "short_description": first["short_description"],
        "star_count": 13000,
        "pull_count": first["pull_count"],
        "repo_owner": "",
        "is_automated": False,
        "is_official": True,
    }
    assert first["pull_count"] >= 1_200_000_000 and len(first["short_description"]) > 45
    assert [r["repo_name"] for r in page1["results"][1:3]] == ["bitnami/redis", "redis/redis-stack"]

    results, url, pages = [], page1["next"], 1
    results += page1["results"]
    while url:
        assert url.startswith(hub.url)
        status, _, page = get_json(url)
        assert status == 200
        results += page["results"]
        url, pages = page["next"], pages + 1
    assert pages == 3 and len(results) == 63 and len({r["repo_name"] for r in results}) == 63
    popular_later = [r for r in results[25:] if r["star_count"] >= 1000]
    assert len([r for r in results if r["star_count"] >= 1000]) >= 12 and len(popular_later) >= 6
    assert any("\n" in r["short_description"] for r in results)
    assert any(r["short_description"] == "" for r in results)

    status, _, err = get_json(f"{hub.url}/v2/search/repositories/?query=redis&page_size=101")
    assert status == 400 and "page_size" in err["message"]
    status, _, nginx = get_json(f"{hub.url}/v2/search/repositories/?query=NGINX")
    assert status == 200 and nginx["results"][0]["repo_name"] == "nginx" and nginx["next"] == ""
    assert hub.requests[-1].query == {"query": "NGINX"}


def test_hub_tags_and_custom_dataset(hub: FakeHub) -> None:
    status, _, tags = get_json(f"{hub.url}/v2/namespaces/library/repositories/redis/tags?page_size=5")
    assert status == 200 and tags["count"] == 15 and tags["previous"] is None
    assert urlsplit(tags["next"]).path == "/v2/namespaces/library/repositories/redis/tags"
    latest = tags["results"][0]
    assert latest["name"] == "latest" and latest["digest"].startswith("sha256:")
    assert latest["media_type"] == "application/vnd.oci.image.index.v1+json"
    archs = [(i["architecture"], i["os"]) for i in latest["images"]]
    assert ("amd64", "linux") in archs and ("unknown", "unknown") in archs
    for key in ("full_size", "last_updated", "tag_last_pushed"):
        assert key in latest
    for key in ("architecture", "os", "variant", "digest", "size", "status", "last_pushed"):
        assert key in latest["images"][0]

    status, _, legacy = get_json(
        f"{hub.url}/v2/repositories/library/nginx/tags/?page_size=100&page=1&ordering=last_updated"
    )
    assert status == 200 and legacy["next"] is None and len(legacy["results"]) == legacy["count"] == 12
    stamps = [t["last_updated"] for t in legacy["results"]]
    assert stamps == sorted(stamps, reverse=True)
    status, _, single = get_json(f"{hub.url}/v2/repositories/openresty/openresty/tags/alpine")
    assert status == 200 and {i["architecture"] for i in single["images"]} == {"amd64"}

    status, _, missing = get_json(f"{hub.url}/v2/namespaces/library/repositories/nope/tags")
    assert status == 404 and missing["message"] == "object not found" and "errinfo" in missing

    data = [hub_repo("acme/app", stars=5, tags=[hub_tag("acme/app", "v1", platforms=("amd64", "arm64"))])]
    with FakeHub(dataset=data) as custom:
        _, _, found = get_json(f"{custom.url}/v2/search/repositories/?query=app")
        assert [r["repo_name"] for r in found["results"]] == ["acme/app"] and "tags" not in found["results"][
            0
        ]
        _, _, acme = get_json(f"{custom.url}/v2/repositories/acme/app/tags/")
        assert len(acme["results"][0]["images"]) == 4  # 2 platforms + 2 attestations


def test_hub_faults(hub: FakeHub) -> None:
    search = f"{hub.url}/v2/search/repositories/?query=alpine"
    retry_ts = int(time.time()) + 30
    hub.fail(429, retry_after_ts=retry_ts)
    status, headers, _ = get_json(search)
    assert (
        status == 429
        and headers["X-Retry-After"] == str(retry_ts)
        and 28 <= int(headers["Retry-After"]) <= 30
    )

    hub.fail(503, times=2)
    assert [get_json(search)[0] for _ in range(3)] == [503, 503, 200]
    hub.fail(500)
    status, _, body = get_json(search)
    assert status == 500 and "message" in body
    assert [r.status for r in hub.requests] == [429, 503, 503, 200, 500]

    hub.stall(1.0, times=1)
    with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
        get_json(search, timeout=0.2)
    assert get_json(search)[0] == 200

    url = hub.url
    hub.stop()
    with pytest.raises(urllib.error.URLError):
        get_json(f"{url}/v2/search/repositories/?query=x", timeout=1)
