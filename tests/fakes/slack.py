"""A local fake of Slack for pointing the *real* slack_sdk / slack_bolt clients at.

One ``FakeSlack`` serves, on 127.0.0.1 with OS-assigned ports:

* the Web API under ``.api_url`` (``WebClient(base_url=fake.api_url, token="xoxb-test")``),
* ``response_url`` endpoints (``fake.response_url("cmd")``) as used by ``respond()`` /
  ``WebhookClient``,
* the ``files_upload_v2`` upload URL handed out by ``files.getUploadURLExternal``,
* a Socket Mode websocket endpoint, whose URL ``apps.connections.open`` returns.

Every HTTP request is recorded as a :class:`Call`; faults can be queued per method.

It is as strict as Slack: every message, view, response_url body and upload step is checked
against Slack's rules (tests/fakes/slack_rules.py) and refused with Slack's error answer. Each
refusal is also recorded in :data:`VIOLATIONS`; tests/conftest.py fails the test, and the whole
run, on any that was not expected. A test of the fake that breaks a rule on purpose does so
inside ``with fake.expect_violations():``.

Proxy caveat: slack_sdk reads HTTPS_PROXY/HTTP_PROXY (and ignores NO_PROXY), including for
the builtin Socket Mode client. Delete those variables (or set them to "") in tests.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import socket
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, quote, urlsplit

from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve

from tests.fakes import slack_rules
from tests.fakes.slack_rules import Violation

__all__ = [
    "APP_ID",
    "BOT_ID",
    "BOT_USER_ID",
    "PROXY_ENV_VARS",
    "TEAM_ID",
    "VIOLATIONS",
    "Call",
    "FakeSlack",
    "Violation",
]

TEAM_ID = "T111"
TEAM_DOMAIN = "test-domain"
BOT_USER_ID = "UBOT"
BOT_ID = "B111"
APP_ID = "A111"

#: Environment variables slack_sdk consults for a proxy (it does not honour NO_PROXY).
PROXY_ENV_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")

#: Form fields whose values Slack clients send as JSON strings; they are decoded when recorded.
JSON_FIELDS = frozenset({"blocks", "attachments", "files", "view", "metadata"})

#: Methods that answer without a token (everything else returns ``not_authed`` without one).
_NO_AUTH_METHODS = frozenset({"api.test", "oauth.v2.access", "oauth.access", "openid.connect.token"})

_BOT_SCOPES = "commands,chat:write,chat:write.public,files:write,users:read,usergroups:read"

Responder = Callable[["Call"], dict[str, Any]] | dict[str, Any]


@dataclass
class Call:
    """One request received by the fake.

    ``method`` is the Web API method ("chat.postMessage"), ``"response_url"`` for a POST to a
    :meth:`FakeSlack.response_url`, ``"file_upload"`` for the bytes POSTed to an upload URL,
    or ``"not_found"`` for an unknown path. ``status`` is the HTTP status the fake answered
    with and ``response`` the body (a dict for the Web API, a str otherwise).
    """

    method: str
    body: dict[str, Any]
    headers: dict[str, str]
    path: str
    at: float
    status: int = 200
    response: Any = None
    tag: str | None = None
    token: str | None = None
    raw: bytes = b""

    @property
    def ok(self) -> bool:
        """True when the fake answered HTTP 200 and (for the Web API) ``"ok": true``."""
        if self.status != 200:
            return False
        if isinstance(self.response, dict):
            return bool(self.response.get("ok", True))
        return True

    @property
    def error(self) -> str | None:
        """The Slack ``error`` string (Web API) or error body (webhooks), if the call failed."""
        if isinstance(self.response, dict):
            err = self.response.get("error")
            return str(err) if err is not None else None
        if not self.ok and isinstance(self.response, str):
            return self.response
        return None

    def short(self, limit: int = 240) -> str:
        body = json.dumps(self.body, default=str, ensure_ascii=False)
        if len(body) > limit:
            body = body[:limit] + "…"
        extra = f" tag={self.tag}" if self.tag is not None else ""
        err = f" error={self.error}" if self.error else ""
        return f"{self.method} status={self.status}{err}{extra} body={body}"


@dataclass
class _Fault:
    status: int
    error: str | None
    retry_after: int | None


@dataclass
class _WsConn:
    index: int
    conn: ServerConnection
    path: str
    opened_at: float = field(default_factory=time.time)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeSlack


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        self.server.fake._handle_http(self)

    def do_POST(self) -> None:
        self.server.fake._handle_http(self)

    def log_message(self, format: str, *args: Any) -> None:
        return


def _single(values: dict[str, list[str]]) -> dict[str, Any]:
    return {k: v[0] if len(v) == 1 else v for k, v in values.items()}


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


#: Every rule broken by a payload to any FakeSlack of this process (tests/conftest.py fails the run on
#: one that was not expected).
VIOLATIONS: list[Violation] = []


class FakeSlack:
    """Fake Slack Web API + response_url hooks + Socket Mode endpoint. See module docstring.

    Usage::

        with FakeSlack() as fake:
            client = WebClient(base_url=fake.api_url, token="xoxb-test")
            client.chat_postMessage(channel="C111", text="hi")
            [call] = fake.wait_for("chat.postMessage")
    """

    def __init__(
        self,
        *,
        ws_ping_interval: float | None = 20,
        ws_ping_timeout: float | None = 20,
    ) -> None:
        self._ws_ping_interval = ws_ping_interval
        self._ws_ping_timeout = ws_ping_timeout

        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._calls: list[Call] = []
        self._faults: dict[str, deque[_Fault]] = {}
        self._responders: dict[str, Responder] = {}

        self._ts_base = int(time.time())
        self._ts_counter = itertools.count(100)
        self._id_counter = itertools.count(1)
        self._hook_counter = itertools.count(1)
        #: Per response_url path: when it was handed out and how many messages it took.
        self._hooks: dict[str, tuple[float, int]] = {}
        self._messages: dict[tuple[str, str], dict[str, Any]] = {}
        self._pending_files: dict[str, dict[str, Any]] = {}
        #: Bytes POSTed to upload URLs, by file id.
        self.uploads: dict[str, bytes] = {}
        #: users.info answers, by user id (unknown ids get a generated user).
        self.users: dict[str, dict[str, Any]] = {}
        #: usergroups.users.list members, by usergroup id (unknown id -> no_such_subteam).
        self.usergroups: dict[str, list[str]] = {}
        #: Channels by name -> ID: chat.postMessage accepts a known name, as Slack does.
        self.channels: dict[str, str] = {}
        #: Rules broken by payloads to this fake (each also in the module's VIOLATIONS).
        self.violations: list[Violation] = []
        self._expecting = 0

        self._http: _HTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self._ws: Server | None = None
        self._ws_thread: threading.Thread | None = None
        self._ws_conns: list[_WsConn] = []
        self._connections = 0
        #: Every text frame received from Socket Mode clients (parsed JSON, or {"_raw": text}).
        self.ws_messages: list[dict[str, Any]] = []
        #: Ack frames received (those with an ``envelope_id``), in arrival order.
        self.acks: list[dict[str, Any]] = []
        # perf_counter() when each envelope was sent and its ack frame read, taken by the threads
        # that do so: a waiter woken later (behind this process's GIL) would add its own delay.
        self._sent_at: dict[str, float] = {}
        self._acked_at: dict[str, float] = {}
        #: Envelopes sent with :meth:`send_envelope`, in order.
        self.envelopes: list[dict[str, Any]] = []
        #: Path (with query) of every websocket connection accepted.
        self.ws_paths: list[str] = []
        #: As Slack does with several open connections (several replicas of one app): envelopes go
        #: to each in turn. Off, every envelope goes to the newest connection (one client that is
        #: replacing its connection, as the reconnect tests have it).
        self.spread_envelopes = False
        self._turn = itertools.count()
        #: Which connection (its number, from 1 in order of acceptance) each envelope was sent on.
        self.sent_on: dict[str, int] = {}

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeSlack:
        if self._http is not None:
            return self
        http = _HTTPServer(("127.0.0.1", 0), _Handler)
        http.fake = self
        self._http = http
        self._http_thread = threading.Thread(
            target=http.serve_forever, kwargs={"poll_interval": 0.05}, name="FakeSlack-http", daemon=True
        )
        self._http_thread.start()

        self._ws = serve(
            self._ws_handler,
            "127.0.0.1",
            0,
            compression=None,
            process_request=self._ws_process_request,
            ping_interval=self._ws_ping_interval,
            ping_timeout=self._ws_ping_timeout,
            close_timeout=2,
        )
        self._ws_thread = threading.Thread(target=self._ws.serve_forever, name="FakeSlack-ws", daemon=True)
        self._ws_thread.start()
        return self

    def stop(self) -> None:
        if self._ws is not None:
            self._ws.shutdown()
            self._ws = None
        if self._ws_thread is not None:
            self._ws_thread.join(timeout=5)
            self._ws_thread = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._http_thread is not None:
            self._http_thread.join(timeout=5)
            self._http_thread = None

    @property
    def web_api_thread(self) -> threading.Thread | None:
        """The thread that accepts Web API requests and starts a thread for each (None if stopped)."""
        return self._http_thread

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ URLs

    @property
    def port(self) -> int:
        if self._http is None:
            raise RuntimeError("FakeSlack is not started")
        return int(self._http.server_address[1])

    @property
    def ws_port(self) -> int:
        if self._ws is None:
            raise RuntimeError("FakeSlack is not started")
        return int(self._ws.socket.getsockname()[1])

    @property
    def url(self) -> str:
        """Base URL without trailing slash, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """Base URL for ``WebClient(base_url=...)``; ends with "/"."""
        return f"{self.url}/api/"

    @property
    def ws_url(self) -> str:
        """A Socket Mode URL (what apps.connections.open returns), for setting ``client.wss_uri``."""
        return f"ws://127.0.0.1:{self.ws_port}/link/?ticket={uuid.uuid4()}&app_id={APP_ID}"

    def response_url(self, tag: str = "x") -> str:
        """A fresh response_url on this fake; POSTs are recorded as method "response_url"."""
        n = next(self._hook_counter)
        path = f"/hooks/{quote(tag, safe='')}/{n}"
        with self._lock:
            self._hooks[path] = (time.time(), 0)
        return f"{self.url}{path}"

    # ------------------------------------------------------------------ configuration

    def fail(
        self,
        method: str,
        status: int | None = None,
        *,
        error: str | None = None,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """Queue ``times`` failures for ``method`` (consumed in order, before normal handling).

        * ``fail(m, 429, retry_after=1)`` -> HTTP 429 + ``Retry-After: 1``,
          ``{"ok":false,"error":"ratelimited"}``
        * ``fail(m, 500, times=3)`` -> HTTP 500 ``{"ok":false,"error":"internal_error"}``
        * ``fail(m, error="not_in_channel")`` -> HTTP 200 ``{"ok":false,"error":"not_in_channel"}``
          (for "response_url"/"file_upload": HTTP 400 with the error as text body)

        ``method`` may be a Web API method, "response_url" or "file_upload".
        """
        if status is None:
            if error is None:
                status = 500
            elif method in ("response_url", "file_upload"):
                status = 400
            else:
                status = 200
        if status == 429 and retry_after is None:
            retry_after = 1
        if error is None:
            error = {429: "ratelimited"}.get(status, "internal_error" if status >= 500 else "invalid_request")
        with self._lock:
            q = self._faults.setdefault(method, deque())
            for _ in range(times):
                q.append(_Fault(status=status, error=error, retry_after=retry_after))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def set_response(self, method: str, response: Responder | None) -> None:
        """Override the answer for a Web API method: a dict, or ``fn(call) -> dict``. None removes."""
        with self._lock:
            if response is None:
                self._responders.pop(method, None)
            else:
                self._responders[method] = response

    def set_usergroup(self, usergroup_id: str, members: list[str]) -> None:
        with self._lock:
            self.usergroups[usergroup_id] = list(members)

    def set_user(self, user_id: str, **fields: Any) -> dict[str, Any]:
        """Set (merge) users.info fields for ``user_id``; returns the stored user object."""
        with self._lock:
            user = self.users.get(user_id) or self._default_user(user_id)
            profile = dict(user.get("profile", {}))
            profile.update(fields.pop("profile", {}))
            user.update(fields)
            user["profile"] = profile
            self.users[user_id] = user
            return user

    @contextlib.contextmanager
    def expect_violations(self) -> Iterator[list[Violation]]:
        """Payloads sent inside this block may break Slack's rules on purpose (tests of the fake):
        their violations are marked expected, and the block must have caused at least one."""
        with self._lock:
            self._expecting += 1
            start = len(self.violations)
        seen: list[Violation] = []
        try:
            yield seen
        finally:
            with self._lock:
                self._expecting -= 1
                seen.extend(self.violations[start:])
        if not seen:
            raise AssertionError("FakeSlack: expected a payload that breaks Slack's rules; none did")

    def _violate(self, method: str, error: str, details: list[str]) -> None:
        with self._lock:
            expected = self._expecting > 0
            for detail in details or [error]:
                v = Violation(error=error, detail=detail, method=method, expected=expected)
                self.violations.append(v)
                VIOLATIONS.append(v)

    # ------------------------------------------------------------------ records

    def calls(self, method: str | None = None, *, ok: bool | None = None) -> list[Call]:
        """Recorded calls (optionally one method; ``ok=True/False`` for successes/failures only)."""
        with self._lock:
            return [
                c
                for c in self._calls
                if (method is None or c.method == method) and (ok is None or c.ok == ok)
            ]

    def wait_for(
        self,
        method: str,
        predicate: Callable[[Call], bool] | None = None,
        count: int = 1,
        timeout: float = 5.0,
        *,
        ok: bool | None = None,
    ) -> list[Call]:
        """Block until at least ``count`` calls of ``method`` match; return all matching calls.

        Rejected calls (faults) count too unless ``ok=True``. A predicate that raises
        KeyError/IndexError/TypeError/AttributeError counts as not matching.
        Raises AssertionError listing what *was* received on timeout.
        """

        def match(c: Call) -> bool:
            if c.method != method or (ok is not None and c.ok != ok):
                return False
            if predicate is None:
                return True
            try:
                return bool(predicate(c))
            except (KeyError, IndexError, TypeError, AttributeError):
                return False

        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                matched = [c for c in self._calls if match(c)]
                if len(matched) >= count:
                    return matched
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    what = " matching predicate" if predicate else ""
                    what += f" with ok={ok}" if ok is not None else ""
                    raise AssertionError(
                        f"FakeSlack: expected {count} call(s) to {method!r}{what} within {timeout}s,"
                        f" got {len(matched)}.\n{self._describe_calls()}"
                    )
                self._cond.wait(remaining)

    def reset(self) -> None:
        """Clear recorded calls, websocket frames, acks and envelopes (faults and state stay)."""
        with self._lock:
            self._calls.clear()
            self.ws_messages.clear()
            self.acks.clear()
            self.envelopes.clear()
            self._sent_at.clear()
            self._acked_at.clear()

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        """Current state of a message posted via chat.postMessage (after updates), or None."""
        with self._lock:
            msg = self._messages.get((channel, ts))
            return dict(msg) if msg is not None else None

    def messages(self, channel: str | None = None) -> list[dict[str, Any]]:
        """Current (not deleted) messages, in posting order, optionally for one channel."""
        with self._lock:
            return [dict(m) for (ch, _ts), m in self._messages.items() if channel is None or ch == channel]

    def _describe_calls(self) -> str:
        with self._lock:
            if not self._calls:
                return "Received: nothing."
            lines = [f"Received {len(self._calls)} call(s):"]
            lines += [f"  {i}. {c.short()}" for i, c in enumerate(self._calls[-40:], 1)]
            if len(self._calls) > 40:
                lines.append(f"  (only the last 40 of {len(self._calls)} shown)")
            return "\n".join(lines)

    def _record(self, call: Call) -> None:
        with self._cond:
            self._calls.append(call)
            self._cond.notify_all()

    def _take_fault(self, method: str) -> _Fault | None:
        with self._lock:
            q = self._faults.get(method)
            if q:
                return q.popleft()
            return None

    # ------------------------------------------------------------------ HTTP dispatch

    def _handle_http(self, h: _Handler) -> None:
        split = urlsplit(h.path)
        path = split.path
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length > 0 else b""
        headers = {k.lower(): v for k, v in h.headers.items()}
        at = time.time()

        if path.startswith("/api/"):
            self._handle_api(h, path[len("/api/") :], split.query, raw, headers, at)
        elif path.startswith("/hooks/"):
            self._handle_hook(h, path, raw, headers, at)
        elif path.startswith("/upload/"):
            self._handle_upload(h, path, raw, headers, at)
        else:
            call = Call("not_found", {}, headers, h.path, at, status=404, response="not_found", raw=raw)
            self._record(call)
            self._send(h, 404, b"not_found", "text/plain")

    @staticmethod
    def _send(
        h: _Handler, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None
    ) -> None:
        try:
            h.send_response(status)
            h.send_header("Content-Type", content_type)
            h.send_header("Content-Length", str(len(body)))
            for k, v in (extra or {}).items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    @staticmethod
    def _parse_body(raw: bytes, content_type: str, query: str) -> dict[str, Any]:
        body: dict[str, Any] = _single(parse_qs(query, keep_blank_values=True)) if query else {}
        if not raw:
            return body
        text = raw.decode("utf-8", errors="replace")
        if "json" in content_type:
            try:
                parsed = json.loads(text)
            except ValueError:
                body["_raw"] = text
                return body
            if isinstance(parsed, dict):
                body.update(parsed)
            else:
                body["_json"] = parsed
            return body
        if "multipart" in content_type:
            body["_raw"] = text
            return body
        form = _single(parse_qs(text, keep_blank_values=True))
        for k, v in form.items():
            body[k] = _maybe_json(v) if k in JSON_FIELDS else v
        return body

    def _handle_api(
        self, h: _Handler, method: str, query: str, raw: bytes, headers: dict[str, str], at: float
    ) -> None:
        body = self._parse_body(raw, headers.get("content-type", ""), query)
        auth = headers.get("authorization", "")
        token: str | None = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        if not token and isinstance(body.get("token"), str):
            token = body["token"]
        call = Call(method, body, headers, h.path, at, token=token, raw=raw)

        extra: dict[str, str] = {}
        fault = self._take_fault(method)
        if fault is not None:
            status = fault.status
            resp: dict[str, Any] = {"ok": False, "error": fault.error}
            if fault.retry_after is not None:
                extra["Retry-After"] = str(fault.retry_after)
        else:
            status = 200
            try:
                resp = self._api_answer(call)
            except Exception as e:  # noqa: BLE001 - a bug in a responder: surface it to the client
                status, resp = 500, {"ok": False, "error": "fatal_error", "detail": repr(e)}
            if method == "auth.test" and resp.get("ok"):
                extra["x-oauth-scopes"] = _BOT_SCOPES
        call.status = status
        call.response = resp
        self._record(call)
        self._send(h, status, json.dumps(resp).encode(), "application/json; charset=utf-8", extra)

    def _api_answer(self, call: Call) -> dict[str, Any]:
        with self._lock:
            responder = self._responders.get(call.method)
        if responder is not None:
            return dict(responder(call) if callable(responder) else responder)
        if not call.token and call.method not in _NO_AUTH_METHODS:
            return {"ok": False, "error": "not_authed"}
        fn = getattr(self, "_api_" + call.method.replace(".", "_"), None)
        if fn is None:
            return {"ok": True}
        result: dict[str, Any] = fn(call)
        return result

    # ------------------------------------------------------------------ Web API methods

    def _next_ts(self) -> str:
        return f"{self._ts_base}.{next(self._ts_counter):06d}"

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._id_counter):08d}"

    def _refuse(self, call: Call, error: str, details: list[str] | None = None) -> dict[str, Any]:
        """Slack's answer to a payload that breaks its rules, recorded as a violation."""
        self._violate(call.method, error, details or [])
        resp: dict[str, Any] = {"ok": False, "error": error}
        if details:
            resp["errors"] = list(details)
            resp["response_metadata"] = {"messages": [f"[ERROR] {d}" for d in details]}
        return resp

    def _resolve_channel(self, call: Call, key: str, *, names: bool) -> str | dict[str, Any]:
        """The conversation ID ``call.body[key]`` names, or Slack's error answer.

        ``names``: the method takes a channel name too (chat.postMessage, chat.postEphemeral);
        otherwise Slack's reference says "ID" and anything else is refused."""
        value = call.body.get(key)
        if not value:
            return self._refuse(call, "channel_not_found", [f"missing {key}"])
        value = str(value)
        if slack_rules.is_conversation_id(value):
            return value
        if names and slack_rules.is_user_id(value) and call.method == "chat.postMessage":
            return "D" + value[1:]  # posting to a user ID lands in the app's direct message
        if names and re.fullmatch(r"#?[a-z0-9][a-z0-9._-]{0,79}", value):
            with self._lock:
                known = self.channels.get(value.lstrip("#"))
            return known or {"ok": False, "error": "channel_not_found"}  # a typo, not a bot bug
        return self._refuse(call, "channel_not_found", [f"{key} must be a conversation ID, got {value!r}"])

    def _message_error(self, call: Call, *, require_content: bool = True) -> dict[str, Any] | None:
        body = call.body
        if require_content and not (body.get("text") or body.get("blocks") or body.get("attachments")):
            return self._refuse(call, "no_text")
        problems = slack_rules.message_errors(body)
        if problems:
            error = problems[0][0]
            return self._refuse(call, error, [d for e, d in problems if e == error])
        return None

    def _api_auth_test(self, call: Call) -> dict[str, Any]:
        return {
            "ok": True,
            "url": f"https://{TEAM_DOMAIN}.slack.com/",
            "team": "Test Team",
            "user": "dockerbot",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _api_chat_postMessage(self, call: Call) -> dict[str, Any]:
        b = call.body
        channel = self._resolve_channel(call, "channel", names=True)
        if isinstance(channel, dict):
            return channel
        err = self._message_error(call)
        if err:
            return err
        ts = self._next_ts()
        msg: dict[str, Any] = {
            "type": "message",
            "subtype": "bot_message",
            "text": b.get("text", ""),
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": TEAM_ID,
            "ts": ts,
        }
        for k in ("blocks", "attachments", "thread_ts", "metadata"):
            if b.get(k) is not None:
                msg[k] = b[k]
        with self._lock:
            self._messages[(channel, ts)] = msg
        return {"ok": True, "channel": channel, "ts": ts, "message": msg}

    def _api_chat_update(self, call: Call) -> dict[str, Any]:
        b = call.body
        channel = self._resolve_channel(call, "channel", names=False)
        if isinstance(channel, dict):
            return channel
        err = self._message_error(call, require_content=False)
        if err:
            return err
        if not b.get("ts"):
            return {"ok": False, "error": "message_not_found"}
        ts = str(b["ts"])
        with self._lock:
            known = self._messages.get((channel, ts))
            msg = dict(known or {"type": "message", "user": BOT_USER_ID, "bot_id": BOT_ID})
            for k in ("text", "blocks", "attachments", "metadata"):
                if k in b:
                    msg[k] = b[k]
            msg["edited"] = {"user": BOT_USER_ID, "ts": self._next_ts()}
            if (channel, ts) in self._messages:
                self._messages[(channel, ts)] = msg
        return {"ok": True, "channel": channel, "ts": ts, "text": msg.get("text", ""), "message": msg}

    def _api_chat_postEphemeral(self, call: Call) -> dict[str, Any]:
        b = call.body
        channel = self._resolve_channel(call, "channel", names=True)
        if isinstance(channel, dict):
            return channel
        err = self._message_error(call)
        if err:
            return err
        if not slack_rules.is_user_id(b.get("user")):
            return self._refuse(
                call, "user_not_in_channel", [f"user must be a user ID, got {b.get('user')!r}"]
            )
        return {"ok": True, "message_ts": self._next_ts()}

    def _api_chat_delete(self, call: Call) -> dict[str, Any]:
        b = call.body
        if not b.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        if not b.get("ts"):
            return {"ok": False, "error": "message_not_found"}
        with self._lock:
            self._messages.pop((str(b["channel"]), str(b["ts"])), None)
        return {"ok": True, "channel": b["channel"], "ts": b["ts"]}

    def _api_views_publish(self, call: Call) -> dict[str, Any]:
        b = call.body
        view = _maybe_json(b.get("view"))
        if not slack_rules.is_user_id(b.get("user_id")):
            return self._refuse(
                call, "invalid_arguments", [f"user_id must be a user ID, got {b.get('user_id')!r}"]
            )
        if not isinstance(view, dict) or view.get("type") != "home":
            return self._refuse(call, "invalid_arguments", ["view must be an object of type home"])
        errors = slack_rules.block_errors(
            view.get("blocks", []), max_blocks=slack_rules.MAX_VIEW_BLOCKS, root="/view/blocks"
        )
        if errors:
            return self._refuse(call, "invalid_arguments", errors)
        out = dict(view)
        out.update({"id": self._next_id("V"), "team_id": TEAM_ID, "app_id": APP_ID, "bot_id": BOT_ID})
        out["hash"] = uuid.uuid4().hex[:16]
        return {"ok": True, "view": out}

    def _api_files_getUploadURLExternal(self, call: Call) -> dict[str, Any]:
        b = call.body
        if not b.get("filename") or not str(b.get("length", "")).isdigit() or int(b["length"]) <= 0:
            return self._refuse(call, "invalid_arguments", ["filename and a positive length are required"])
        file_id = self._next_id("F")
        with self._lock:
            self._pending_files[file_id] = {"filename": b["filename"], "length": int(b["length"])}
        return {"ok": True, "upload_url": f"{self.url}/upload/{file_id}", "file_id": file_id}

    def _api_files_completeUploadExternal(self, call: Call) -> dict[str, Any]:
        b = call.body
        files = _maybe_json(b.get("files"))
        if not isinstance(files, list) or not files:
            return self._refuse(call, "invalid_arguments", ["files must be a non-empty array"])
        channels: list[str] = []
        if b.get("channel_id"):
            channel = self._resolve_channel(call, "channel_id", names=False)
            if isinstance(channel, dict):
                return channel
            channels = [channel]
        elif b.get("channels"):
            channels = [c for c in str(b["channels"]).split(",") if c]
            bad = [c for c in channels if not slack_rules.is_conversation_id(c)]
            if bad:
                return self._refuse(
                    call, "channel_not_found", [f"channels must be conversation IDs, got {bad}"]
                )
        out = []
        now = int(time.time())
        with self._lock:
            for f in files:
                fid = str(f.get("id", "")) if isinstance(f, dict) else ""
                pending = self._pending_files.get(fid)
                if pending is None:
                    return self._refuse(call, "file_not_found", [f"no upload URL was asked for {fid!r}"])
                size = len(self.uploads.get(fid, b""))
                if fid not in self.uploads or size != pending["length"]:
                    said = pending["length"]
                    detail = f"file {fid}: {size} bytes uploaded, files.getUploadURLExternal said {said}"
                    return self._refuse(call, "invalid_arguments", [detail])
                name = pending["filename"]
                out.append(
                    {
                        "id": fid,
                        "created": now,
                        "timestamp": now,
                        "name": name,
                        "title": f.get("title") or name,
                        "mimetype": "text/plain",
                        "filetype": "text",
                        "user": BOT_USER_ID,
                        "size": len(self.uploads.get(fid, b"")),
                        "channels": [c for c in channels if c[:1] == "C"],
                        "groups": [c for c in channels if c[:1] == "G"],
                        "ims": [c for c in channels if c[:1] == "D"],
                        "permalink": f"https://{TEAM_DOMAIN}.slack.com/files/{BOT_USER_ID}/{fid}/{name}",
                    }
                )
        return {"ok": True, "files": out}

    def _default_user(self, user_id: str) -> dict[str, Any]:
        name = f"user_{user_id.lower()}"
        return {
            "id": user_id,
            "team_id": TEAM_ID,
            "name": name,
            "real_name": f"User {user_id}",
            "deleted": False,
            "is_admin": False,
            "is_owner": False,
            "is_bot": user_id == BOT_USER_ID,
            "tz": "Europe/London",
            "profile": {"display_name": name, "real_name": f"User {user_id}", "email": f"{name}@example.com"},
        }

    def _api_users_info(self, call: Call) -> dict[str, Any]:
        uid = call.body.get("user")
        if not uid:
            return {"ok": False, "error": "user_not_found"}
        with self._lock:
            user = self.users.get(str(uid)) or self._default_user(str(uid))
        return {"ok": True, "user": user}

    def _api_usergroups_users_list(self, call: Call) -> dict[str, Any]:
        gid = call.body.get("usergroup")
        with self._lock:
            members = self.usergroups.get(str(gid)) if gid else None
        if members is None:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": list(members)}

    def _api_conversations_open(self, call: Call) -> dict[str, Any]:
        users = str(call.body.get("users") or "")
        if not users:
            return {"ok": False, "error": "users_list_not_supplied"}
        return {"ok": True, "channel": {"id": "D" + users.split(",")[0][1:]}}

    def _api_apps_connections_open(self, call: Call) -> dict[str, Any]:
        if not (call.token or "").startswith("xapp-"):
            return {"ok": False, "error": "not_allowed_token_type"}
        if self._ws is None:
            return {"ok": False, "error": "internal_error"}
        return {"ok": True, "url": self.ws_url}

    # ------------------------------------------------------------------ response_url / upload

    def _handle_hook(self, h: _Handler, path: str, raw: bytes, headers: dict[str, str], at: float) -> None:
        parts = path.split("/")
        tag = parts[2] if len(parts) > 2 else ""
        text = raw.decode("utf-8", errors="replace")
        body: dict[str, Any]
        try:
            parsed = json.loads(text) if text else {}
            body = parsed if isinstance(parsed, dict) else {"_json": parsed}
            bad_json = not isinstance(parsed, dict)
        except ValueError:
            body, bad_json = {"_raw": text}, True
        call = Call("response_url", body, headers, h.path, at, tag=tag, raw=raw)
        extra: dict[str, str] = {}
        fault = self._take_fault("response_url")
        if fault is not None:
            status, answer = fault.status, fault.error or "error"
            if fault.retry_after is not None:
                extra["Retry-After"] = str(fault.retry_after)
        elif bad_json:
            status, answer = 400, "invalid_payload"
            self._violate("response_url", answer, ["the body must be a JSON object"])
        elif not any(body.get(k) for k in ("text", "blocks", "attachments", "delete_original")):
            status, answer = 400, "no_text"
            self._violate("response_url", answer, ["a response_url body needs text or blocks"])
        elif problems := slack_rules.message_errors(body, require_text=not body.get("delete_original")):
            status, answer = 400, problems[0][0]
            self._violate("response_url", answer, [d for e, d in problems if e == answer])
        elif refused := self._use_hook(path, at):
            status, answer = 404, refused
            self._violate("response_url", answer, [f"{path}: {slack_rules.RESPONSE_URL_LIMIT}"])
        else:
            status, answer = 200, "ok"
        call.status, call.response = status, answer
        self._record(call)
        self._send(h, status, answer.encode(), "text/html", extra)

    def _use_hook(self, path: str, at: float) -> str | None:
        """Count one message on a response_url: None if Slack takes it, else its refusal."""
        with self._lock:
            handed_out, used = self._hooks.get(path, (at, 0))
            if at - handed_out > slack_rules.RESPONSE_URL_TTL:
                return "expired_url"
            if used >= slack_rules.RESPONSE_URL_USES:
                return "used_url"
            self._hooks[path] = (handed_out, used + 1)
        return None

    def _handle_upload(self, h: _Handler, path: str, raw: bytes, headers: dict[str, str], at: float) -> None:
        file_id = path.rsplit("/", 1)[-1]
        call = Call("file_upload", {"file_id": file_id, "size": len(raw)}, headers, h.path, at, raw=raw)
        fault = self._take_fault("file_upload")
        with self._lock:
            known = file_id in self._pending_files
        if fault is not None:
            status, answer = fault.status, fault.error or "error"
        elif not known:
            status, answer = 404, "not_found"
            self._violate("file_upload", "not_found", [f"no upload URL was handed out for {file_id!r}"])
        else:
            status, answer = 200, f"OK - {len(raw)}"
            with self._lock:
                self.uploads[file_id] = raw
        call.status, call.response = status, answer
        self._record(call)
        self._send(h, status, answer.encode(), "text/plain")

    # ------------------------------------------------------------------ Socket Mode

    @property
    def connections(self) -> int:
        """Total websocket connections accepted so far."""
        with self._lock:
            return self._connections

    @property
    def active_connections(self) -> int:
        with self._lock:
            return len(self._ws_conns)

    @property
    def ws_latency(self) -> float:
        """Round-trip time of the newest connection's last keepalive ping (0.0 until a pong arrived).

        Non-zero proves the client answered the server's ping with a matching pong.
        """
        with self._lock:
            return float(self._ws_conns[-1].conn.latency) if self._ws_conns else 0.0

    def _ws_process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        if not request.path.startswith("/link"):
            return conn.respond(404, "not found\n")
        return None

    def _ws_handler(self, conn: ServerConnection) -> None:
        path = conn.request.path if conn.request is not None else ""
        with self._lock:
            n_active = len(self._ws_conns) + 1
        hello = {
            "type": "hello",
            "num_connections": n_active,
            "debug_info": {"host": "applink-fake", "build_number": 10, "approximate_connection_time": 18060},
            "connection_info": {"app_id": APP_ID},
        }
        try:
            conn.send(json.dumps(hello))
        except ConnectionClosed:
            return
        with self._cond:
            self._connections += 1
            entry = _WsConn(index=self._connections, conn=conn, path=path)
            self._ws_conns.append(entry)
            self.ws_paths.append(path)
            self._cond.notify_all()
        try:
            for frame in conn:
                received_at = time.perf_counter()
                text = frame if isinstance(frame, str) else frame.decode("utf-8", errors="replace")
                try:
                    msg = json.loads(text)
                    if not isinstance(msg, dict):
                        msg = {"_json": msg}
                except ValueError:
                    msg = {"_raw": text}
                with self._cond:
                    self.ws_messages.append(msg)
                    if "envelope_id" in msg:
                        self.acks.append(msg)
                        self._acked_at.setdefault(str(msg["envelope_id"]), received_at)
                    self._cond.notify_all()
        except ConnectionClosed:
            pass
        finally:
            with self._cond:
                if entry in self._ws_conns:
                    self._ws_conns.remove(entry)
                self._cond.notify_all()

    def wait_connected(self, timeout: float = 5.0, *, connections: int = 1) -> None:
        """Wait until a client is connected and at least ``connections`` were accepted in total."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (self._ws_conns and self._connections >= connections):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    opens = [c for c in self._calls if c.method == "apps.connections.open"]
                    raise AssertionError(
                        f"FakeSlack: no Socket Mode connection (wanted total>={connections}) within"
                        f" {timeout}s; accepted={self._connections}, active={len(self._ws_conns)},"
                        f" apps.connections.open calls={[c.short(120) for c in opens]}"
                    )
                self._cond.wait(remaining)

    def _current(self, timeout: float) -> _WsConn:
        self.wait_connected(timeout)
        with self._lock:
            if self.spread_envelopes:
                return self._ws_conns[next(self._turn) % len(self._ws_conns)]
            return self._ws_conns[-1]

    def _send_on(self, entry: _WsConn, payload: dict[str, Any]) -> None:
        entry.conn.send(json.dumps(payload))

    def _send_ws(self, payload: dict[str, Any], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            entry = self._current(max(0.0, deadline - time.monotonic()))
            try:
                self._send_on(entry, payload)
                if "envelope_id" in payload:
                    with self._lock:
                        self.sent_on[payload["envelope_id"]] = entry.index
                return
            except ConnectionClosed:
                with self._cond:
                    if entry in self._ws_conns:
                        self._ws_conns.remove(entry)
                if time.monotonic() >= deadline:
                    raise

    def send_envelope(
        self,
        type: str,
        payload: dict[str, Any],
        envelope_id: str | None = None,
        retry_attempt: int = 0,
        retry_reason: str = "",
        accepts_response_payload: bool | None = None,
        *,
        timeout: float = 5.0,
    ) -> str:
        """Send an envelope on the newest connection, or on each in turn with ``spread_envelopes``
        (waiting up to ``timeout`` for one).

        ``type`` is "slash_commands", "interactive" or "events_api". Returns the envelope_id.
        """
        envelope_id = envelope_id or str(uuid.uuid4())
        if accepts_response_payload is None:  # as Slack sets it: commands and view submissions
            accepts_response_payload = type == "slash_commands" or (
                type == "interactive" and payload.get("type") == "view_submission"
            )
        env: dict[str, Any] = {
            "envelope_id": envelope_id,
            "type": type,
            "payload": payload,
            "accepts_response_payload": accepts_response_payload,
        }
        if type == "events_api" or retry_attempt or retry_reason:
            env["retry_attempt"] = retry_attempt
            env["retry_reason"] = retry_reason
        with self._lock:
            self.envelopes.append(env)
            self._sent_at[envelope_id] = time.perf_counter()
        self._send_ws(env, timeout)
        return envelope_id

    def ack_seconds(self, envelope_id: str) -> float:
        """From sending the envelope to reading its ack frame (after `wait_for_ack` returned)."""
        with self._lock:
            return self._acked_at[envelope_id] - self._sent_at[envelope_id]

    def wait_for_ack(self, envelope_id: str, timeout: float = 5.0) -> dict[str, Any]:
        """Return the ack frame for ``envelope_id`` (``{"envelope_id":..., "payload"?:...}``)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for a in self.acks:
                    if a.get("envelope_id") == envelope_id:
                        return a
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    sent = [f"{e['type']}:{e['envelope_id']}" for e in self.envelopes]
                    got = [json.dumps(m)[:200] for m in self.ws_messages]
                    raise AssertionError(
                        f"FakeSlack: no ack for envelope {envelope_id!r} within {timeout}s.\n"
                        f"Envelopes sent: {sent}\nFrames received: {got or 'none'}\n"
                        f"connections accepted={self._connections} active={len(self._ws_conns)}"
                    )
                self._cond.wait(remaining)

    def send_disconnect(
        self,
        reason: str = "refresh_requested",
        *,
        close_old: bool = True,
        timeout: float = 5.0,
    ) -> None:
        """Send ``{"type":"disconnect","reason":...}`` on the newest connection.

        With ``close_old`` (default) the fake then closes that connection (close frame 1001) as
        soon as the client has opened a new one (or after 10 s), as Slack does on a refresh.
        Without it the builtin client needs up to its 3 s socket receive timeout to let go of
        the old connection and start reading the new one.
        """
        entry = self._current(timeout)
        self._send_on(entry, {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-fake"}})
        if not close_old:
            return

        def close_when_replaced() -> None:
            deadline = time.monotonic() + 10
            with self._cond:
                while self._connections <= entry.index and time.monotonic() < deadline:
                    self._cond.wait(max(0.0, deadline - time.monotonic()))
            self._close_entry(entry, 1001, reason)

        threading.Thread(target=close_when_replaced, name="FakeSlack-refresh", daemon=True).start()

    def drop_connection(self, how: Literal["reset", "close"] = "reset", timeout: float = 5.0) -> None:
        """Drop the newest connection.

        * "reset": abrupt TCP RST without a close frame.
        * "close": websocket close frame 1011.

        slack_sdk's builtin client reconnects from its monitor thread in both cases, i.e. within
        one client ``ping_interval`` (5 s by default, 10 s in Bolt's SocketModeHandler): its
        on_close hook runs while the socket still looks connected, so it does not reconnect itself.
        """
        entry = self._current(timeout)
        if how == "close":
            self._close_entry(entry, 1011, "dropped by FakeSlack")
            return
        with self._cond:
            if entry in self._ws_conns:
                self._ws_conns.remove(entry)
            self._cond.notify_all()
        with contextlib.suppress(OSError):
            entry.conn.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        entry.conn.close_socket()

    def close_connections(self, code: int = 1001, reason: str = "going away") -> None:
        """Close every open connection with a close frame (returns without waiting).

        Handy before ``SocketModeClient.close()``: set ``client.auto_reconnect_enabled = False``,
        call this, then ``close()`` returns at once instead of waiting up to 3 s for its
        blocked socket read to time out.
        """
        with self._lock:
            entries = list(self._ws_conns)
        for entry in entries:
            self._close_entry(entry, code, reason)

    def _close_entry(self, entry: _WsConn, code: int, reason: str) -> None:
        with self._cond:
            if entry in self._ws_conns:
                self._ws_conns.remove(entry)
            self._cond.notify_all()
        # ServerConnection.close() waits for the peer's close frame, which slack_sdk's builtin
        # client never sends (it just closes the socket): run it off the caller's thread.
        closer = threading.Thread(
            target=entry.conn.close, kwargs={"code": code, "reason": reason}, name="FakeSlack-close"
        )
        closer.daemon = True
        closer.start()

    def close_client(self, client: Any, timeout: float = 3.0) -> None:
        """Quickly close a slack_sdk ``SocketModeClient`` or Bolt ``SocketModeHandler`` connected here.

        Disables auto-reconnect, closes the server side, waits for the client to notice, wakes
        its message-queue thread, then calls ``close()`` (suppressing slack-sdk 3.47's
        ``'NoneType' object has no attribute 'close'`` race). A bare ``close()`` blocks up to
        3 s on the client's socket read plus up to 1 s on its queue poll.
        """
        sm_client = getattr(client, "client", client)  # SocketModeHandler.client
        sm_client.auto_reconnect_enabled = False
        self.close_connections()
        deadline = time.monotonic() + timeout
        while sm_client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.01)
        queue = getattr(sm_client, "message_queue", None)
        if queue is not None:  # builtin client: stop process_messages() waiting 1 s on an empty queue
            sm_client.closed = True
            queue.put(None)
        with contextlib.suppress(AttributeError):
            client.close()
