"""Shared fixtures: a real Docker engine + registry mirror, a fake Slack, a fake Docker Hub.

Nothing here may ever reach the machine's own Docker engine: DOCKER_HOST points at a
socket that does not exist until the sandbox fixture replaces it with its own.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

# Read before the scrub below: the one way to run without the containerd engine, said loudly at the end.
ONE_ENGINE = os.environ.get("DOCKERBOT_TESTS_ONE_ENGINE") == "1"

# Isolation first, before any SDK reads the environment: slack-sdk loads proxy variables itself
# (slack_sdk/proxy_env_variable_loader.py).
# slack-sdk ignores NO_PROXY, so proxy variables must go; SLACK_CLIENT_ID would switch Bolt to OAuth.
for _key in list(os.environ):
    if _key.upper() in {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"} or _key.startswith(
        ("SLACK_", "DOCKER_", "DOCKERBOT_")
    ):
        del os.environ[_key]
os.environ["NO_PROXY"] = "127.0.0.1,localhost"
os.environ["DOCKER_HOST"] = "unix:///nonexistent/dockerbot-tests-have-no-engine-yet.sock"

from bot.core.router import Router  # noqa: E402
from bot.core.services import Services, build_services  # noqa: E402
from bot.core.settings import Settings  # noqa: E402
from bot.sandbox import Engine, Sandbox, ensure_packages, fetch_new_engine  # noqa: E402
from bot.slack.app import create_app  # noqa: E402
from bot.slack.client import make_web_client  # noqa: E402
from bot.slack.dispatch import LocalDispatch  # noqa: E402
from bot.slack.http import HttpServer, Readiness, health_app, http_app  # noqa: E402
from handlers import COMMANDS  # noqa: E402
from tests.chat import ChatBot  # noqa: E402
from tests.fakes.hub import FakeHub  # noqa: E402
from tests.fakes.registry import FakeRegistry  # noqa: E402
from tests.fakes.slack import VIOLATIONS, FakeSlack  # noqa: E402
from tests.fakes.slack_requests import post_signed, slash_command_body  # noqa: E402

SIGNING_SECRET = "test-signing-secret-3f9a"
BOT_TOKEN = "xoxb-test-0000-secret"


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    ensure_packages()
    with Sandbox() as box:
        os.environ["DOCKER_HOST"] = box.docker_host
        yield box


# The engines every bot-vs-CLI comparison runs on: Debian 12's Engine 20.10 (classic overlay2 store) and
# the newest Engine Debian offers with the containerd image store, each with its own docker CLI.
ENGINE_KINDS = ["classic"] if ONE_ENGINE else ["classic", "containerd"]
_engines_ran: dict[str, str] = {}  # kind -> "Engine 28.5.2 (containerd image store)", for the summary


@pytest.fixture(scope="session")
def containerd_engine(sandbox: Sandbox) -> Engine:
    """The second engine, fetched on first use (bot/sandbox/newengine.py); a failure fails the tests."""
    engine = sandbox.add_engine("ctr", binaries=fetch_new_engine(), containerd_store=True)
    _engines_ran["containerd"] = f"{engine.server_version()}, {engine.binaries.label}"
    return engine


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("both_engines") and "engine" in metafunc.fixturenames:
        metafunc.parametrize("engine", ENGINE_KINDS, indirect=True, scope="module")


@pytest.fixture(scope="module")
def engine(request: pytest.FixtureRequest, sandbox: Sandbox) -> Iterator[Engine]:
    """The engine under test: the classic one, or per `both_engines` test each engine in turn. The bot
    reaches it through DOCKER_HOST, as users point it at theirs."""
    kind = getattr(request, "param", "classic")
    if kind == "classic":
        chosen = sandbox.engine
        _engines_ran.setdefault("classic", sandbox.engine.server_version())
    else:
        chosen = request.getfixturevalue("containerd_engine")
    os.environ["DOCKER_HOST"] = chosen.docker_host
    yield chosen
    os.environ["DOCKER_HOST"] = sandbox.docker_host


def store_of(engine: Engine) -> str:
    """ "containerd" or "classic": for the assertions where the two image stores differ on purpose."""
    return "containerd" if engine.containerd_store else "classic"


@pytest.fixture
def docker_cli(engine: Engine):  # type: ignore[no-untyped-def]
    """The docker CLI of the same engine: the oracle for every fact the bot shows."""
    return engine.cli


OPENRESTY = "openresty/openresty:1.13.6.2-alpine"  # a user's image, with a namespace and a long tag


@pytest.fixture(scope="module")
def pulled(engine: Engine) -> None:
    """ubuntu and OPENRESTY on the engine (from the seeded mirror)."""
    engine.cli("pull", "ubuntu")  # engine.cli is what the docker_cli fixture hands out
    engine.cli("pull", OPENRESTY)


@pytest.fixture(scope="session")
def fake_hub() -> Iterator[FakeHub]:
    with FakeHub() as hub:
        yield hub


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack() as slack:
        yield slack


@pytest.fixture
def settings(tmp_path: Path, fake_hub: FakeHub) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        hub_url=fake_hub.url,
        slack_signing_secret=SIGNING_SECRET,
        slack_bot_token=BOT_TOKEN,
        pull_inactivity_timeout=10,
        docker_timeout=30,
        # Deny by default (no role without configuration): the tests' workspace chose viewer for all.
        default_role="viewer",
    )


@pytest.fixture
def services(settings: Settings, engine: Engine) -> Iterator[Services]:
    services = build_services(settings, COMMANDS)
    yield services
    services.close()


@pytest.fixture
def router(services: Services) -> Router:
    return Router(services)


@pytest.fixture
def chat(router: Router, tmp_path: Path) -> ChatBot:
    return ChatBot(router, files_dir=tmp_path / "files")


@dataclass
class SlackHttpBot:
    """The bot served over real HTTP, as Slack reaches it, talking to the fake Slack."""

    url: str
    slack: FakeSlack
    secret: str
    health: str = ""  # http://HOST:PORT of /healthz, /readyz and /metrics (not on Slack's port)

    def command(
        self, text: str, *, user: str = "U111", channel: str = "C111", tag: str = "cmd"
    ) -> tuple[int, str]:
        body = slash_command_body(
            text, user_id=user, channel_id=channel, response_url=self.slack.response_url(tag)
        )
        return post_signed(self.url, body, self.secret)

    def ask(self, text: str, *, user: str, channel: str, tag: str) -> str:
        """A signed slash command; what the user saw (the response_url answer or the posted message)."""
        since = len(self.slack.calls("chat.postMessage"))
        assert self.command(text, user=user, channel=channel, tag=tag)[0] == 200
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            answers = [c for c in self.slack.calls("response_url") if c.tag == tag]
            if answers:
                return json.dumps(answers[0].body)
            posts = self.slack.calls("chat.postMessage")[since:]
            if posts:
                return json.dumps(posts[0].body)
            time.sleep(0.05)
        raise AssertionError(f"no answer to {text!r} from {user}")


@pytest.fixture
def slack_http(settings: Settings, fake_slack: FakeSlack, services: Services) -> Iterator[SlackHttpBot]:
    settings = settings.model_copy(update={"slack_api_url": fake_slack.api_url})
    work = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="work")
    client = make_web_client(settings)
    app = create_app(settings, LocalDispatch(Router(services), client, work), client=client)
    server = HttpServer(http_app(app, settings.max_body_bytes), "127.0.0.1", 0).start()
    health = HttpServer(health_app(Readiness(services.hosts.default)), "127.0.0.1", 0).start()
    try:
        yield SlackHttpBot(
            f"http://127.0.0.1:{server.port}/slack/events",
            fake_slack,
            SIGNING_SECRET,
            health=f"http://127.0.0.1:{health.port}",
        )
    finally:
        server.close()
        health.close()
        work.shutdown(wait=True, cancel_futures=True)


APP_TOKEN = "xapp-1-A111-111-test-secret"


@pytest.fixture
def slack_socket(settings: Settings, fake_slack: FakeSlack, services: Services) -> Iterator[FakeSlack]:
    """The bot connected over Socket Mode to the fake Slack's websocket; yields the fake."""
    from pydantic import SecretStr

    from bot.slack.socket_mode import socket_mode_handler

    settings = settings.model_copy(
        update={"slack_api_url": fake_slack.api_url, "slack_app_token": SecretStr(APP_TOKEN)}
    )
    work = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="work")
    client = make_web_client(settings)
    app = create_app(settings, LocalDispatch(Router(services), client, work), client=client)
    handler = socket_mode_handler(app, APP_TOKEN)
    handler.connect()
    fake_slack.wait_connected()
    try:
        yield fake_slack
    finally:
        fake_slack.close_client(handler)  # fast, and immune to slack-sdk 3.47's close race
        work.shutdown(wait=True, cancel_futures=True)


# What a test needs decides its marker, from the fixtures it uses (directly or not): `engine` for a
# real dockerd, registry or PostgreSQL (root, seconds to start), `slack` for the fake Slack,
# `unit` for the rest (`pytest -m unit`: seconds, no root). A module may also mark itself.
_ENGINE_FIXTURES = {"sandbox", "engine", "postgres_server"}
_SLACK_FIXTURES = {"fake_slack", "slack_http", "slack_socket"}
_KINDS = ("unit", "engine", "slack")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if any(item.get_closest_marker(kind) for kind in _KINDS):
            continue
        needs = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and callspec.params.get("db_url") == "postgresql"
        if needs & _ENGINE_FIXTURES or on_postgres:
            item.add_marker(pytest.mark.engine)
        elif needs & _SLACK_FIXTURES:
            item.add_marker(pytest.mark.slack)
        else:
            item.add_marker(pytest.mark.unit)


@pytest.fixture(autouse=True)
def slack_rules_kept() -> Iterator[None]:
    """Every payload that reached a fake Slack during the test kept Slack's rules
    (tests/fakes/slack_rules.py), unless the test said it breaks them on purpose."""
    start = len(VIOLATIONS)
    yield
    broken = [v for v in VIOLATIONS[start:] if not v.expected]
    if broken:
        pytest.fail("Slack would refuse payloads of this test:\n" + "\n".join(f"  {v}" for v in broken))


def pytest_report_header(config: pytest.Config) -> str:
    if ONE_ENGINE:
        return "engines: classic only (DOCKERBOT_TESTS_ONE_ENGINE=1): the containerd store is NOT tested"
    return (
        "engines: classic (system dockerd) and containerd store (newest Debian engine) for both_engines tests"
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for kind, version in sorted(_engines_ran.items()):
        terminalreporter.write_line(f"engine {kind}: {version}")
    if ONE_ENGINE:
        terminalreporter.write_line(
            "WARNING: DOCKERBOT_TESTS_ONE_ENGINE=1: the containerd-store engine was NOT tested", red=True
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A run in which nothing passed proves nothing: make it fail even if everything was skipped.
    Nor may a run pass in which any payload, of any test or thread, broke Slack's rules."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and exitstatus == 0 and not reporter.stats.get("passed"):
        session.exitstatus = 1
    broken = [v for v in VIOLATIONS if not v.expected]
    if broken:
        if reporter is not None:
            reporter.write_line(f"{len(broken)} payload(s) broke Slack's rules:", red=True)
            for v in broken[:50]:
                reporter.write_line(f"  {v}")
        session.exitstatus = 1


@pytest.fixture
def clean_engine(engine: Engine) -> Engine:
    """The session engine with no containers and no images, for tests that count what is there."""
    containers = engine.cli("ps", "-aq").stdout.split()
    if containers:
        engine.cli("rm", "-f", *containers)
    images = engine.cli("images", "-aq").stdout.split()
    if images:
        engine.cli("rmi", "-f", *dict.fromkeys(images), check=False)
    return engine


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    from tests.postgres import Postgres

    server = Postgres()
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each kind the bot supports."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.sqlite3'}"
    from tests.postgres import fresh_database

    return fresh_database(request.getfixturevalue("postgres_server"))


@pytest.fixture
def fake_registry(sandbox: Sandbox) -> Iterator[FakeRegistry]:
    """A misbehaving registry in front of the sandbox's (tests/fakes/registry.py)."""
    registry = FakeRegistry(sandbox.registry.address).start()
    yield registry
    registry.stop()
