"""The bot over real HTTP, as Slack reaches it: signed form posts to /slack/events."""

from __future__ import annotations

import time
import urllib.parse

from tests.conftest import SlackHttpBot
from tests.fakes.slack_requests import post_signed, slash_command_body


def test_help_is_acked_fast_and_answered_on_the_response_url(slack_http: SlackHttpBot) -> None:
    started = time.monotonic()
    status, body = slack_http.command("help", tag="help")
    assert status == 200
    assert body == ""  # a pure acknowledgement; the answer follows on response_url
    assert time.monotonic() - started < 3
    [call] = slack_http.slack.wait_for("response_url", lambda c: c.tag == "help")
    assert "dockerbot commands" in call.body["text"]
    assert any(b["type"] == "header" for b in call.body["blocks"])
    assert call.body["response_type"] == "ephemeral"


def test_forged_signature_is_refused_and_nothing_runs(slack_http: SlackHttpBot) -> None:
    body = slash_command_body("help", response_url=slack_http.slack.response_url("forged"))
    status, _ = post_signed(slack_http.url, body, "not-the-secret")
    assert status == 401
    _assert_nothing_posted(slack_http)


def test_stale_timestamp_is_refused_and_nothing_runs(slack_http: SlackHttpBot) -> None:
    body = slash_command_body("help", response_url=slack_http.slack.response_url("stale"))
    status, _ = post_signed(slack_http.url, body, slack_http.secret, timestamp=int(time.time()) - 301)
    assert status == 401
    _assert_nothing_posted(slack_http)


def test_body_altered_after_signing_is_refused(slack_http: SlackHttpBot) -> None:
    body = slash_command_body("help", response_url=slack_http.slack.response_url("altered"))
    from tests.fakes.slack_requests import signed_headers

    headers = signed_headers(body, slack_http.secret)
    tampered = body.replace("text=help", "text=" + urllib.parse.quote("rmi ubuntu"))
    status, _ = post_signed(slack_http.url, tampered, slack_http.secret, headers_override=headers)
    assert status == 401
    _assert_nothing_posted(slack_http)


def test_huge_body_is_refused_with_413(slack_http: SlackHttpBot) -> None:
    import http.client

    from tests.fakes.slack_requests import signed_headers

    body = slash_command_body("help " + "x" * 2_000_000, response_url=slack_http.slack.response_url("huge"))
    url = urllib.parse.urlsplit(slack_http.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.putrequest("POST", url.path)
    for key, value in {**signed_headers(body, slack_http.secret), "Content-Length": str(len(body))}.items():
        conn.putheader(key, value)
    conn.endheaders(body[:65536].encode())  # the server must refuse on the declared size, not read it all
    assert conn.getresponse().status == 413
    conn.close()
    _assert_nothing_posted(slack_http)


def test_usage_reply_through_slack(slack_http: SlackHttpBot) -> None:
    status, _ = slack_http.command("imgaes", tag="typo")
    assert status == 200
    [call] = slack_http.slack.wait_for("response_url", lambda c: c.tag == "typo")
    assert "Did you mean `images`?" in call.body["text"]


def test_health_endpoint(slack_http: SlackHttpBot) -> None:
    import json
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(slack_http.health + "/healthz", timeout=5) as resp:
        assert resp.status == 200
        assert json.loads(resp.read()) == {"status": "ok"}


def _assert_nothing_posted(bot: SlackHttpBot) -> None:
    time.sleep(0.5)  # give a wrongly started listener time to post, so its absence means something
    assert bot.slack.calls("response_url") == []
    assert bot.slack.calls("chat.postMessage") == []


def test_duplicated_signature_headers_are_refused(slack_http: SlackHttpBot) -> None:
    import http.client

    from tests.fakes.slack_requests import signed_headers

    body = slash_command_body("help", response_url=slack_http.slack.response_url("dup"))
    good = signed_headers(body, slack_http.secret)
    forged = signed_headers(body, "another-secret")
    url = urllib.parse.urlsplit(slack_http.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.putrequest("POST", url.path)
    for key, value in good.items():
        conn.putheader(key, value)
    conn.putheader("X-Slack-Signature", forged["X-Slack-Signature"])  # a second, different signature
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body.encode())
    assert conn.getresponse().status == 401
    conn.close()
    _assert_nothing_posted(slack_http)


def test_endless_headers_get_431_and_nothing_runs(slack_http: SlackHttpBot) -> None:
    import socket

    url = urllib.parse.urlsplit(slack_http.url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as conn:
        conn.sendall(f"POST {url.path} HTTP/1.1\r\nHost: x\r\nX-Padding: ".encode() + b"a" * 400_000)
        status_line = conn.recv(200).split(b"\r\n")[0]
    assert status_line == b"HTTP/1.1 431 Request Header Fields Too Large"
    _assert_nothing_posted(slack_http)


def test_chunked_body_past_the_limit_is_refused_with_413(slack_http: SlackHttpBot) -> None:
    import socket

    from tests.fakes.slack_requests import signed_headers

    # No Content-Length: the server has to count. Stop sending just past the limit, so that what
    # the server refuses is the size it read, and it has read all it was sent.
    body = slash_command_body("help " + "x" * 1_100_000, response_url=slack_http.slack.response_url("chunks"))
    url = urllib.parse.urlsplit(slack_http.url)
    head = "".join(f"{k}: {v}\r\n" for k, v in signed_headers(body, slack_http.secret).items())
    with socket.create_connection((url.hostname, url.port), timeout=10) as conn:
        conn.sendall(
            f"POST {url.path} HTTP/1.1\r\nHost: x\r\n{head}Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        for i in range(0, 1_000_000 + 65536, 65536):
            chunk = body[i : i + 65536].encode()
            try:
                conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except (ConnectionResetError, BrokenPipeError):
                break  # the server answered and closed once past the limit; its answer is queued
        status_line = conn.recv(200).split(b"\r\n")[0]
    assert status_line == b"HTTP/1.1 413 Request Entity Too Large"
    _assert_nothing_posted(slack_http)


def test_only_post_reaches_the_slack_endpoint(slack_http: SlackHttpBot) -> None:
    import urllib.error
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        opener.open(slack_http.url, timeout=5)
    except urllib.error.HTTPError as error:
        assert error.code == 405 and error.headers["Allow"] == "POST"
    else:
        raise AssertionError("GET /slack/events was served")
