"""/docker pull against a real engine; the docker CLI on the same engine is the oracle.

Faults the sandbox's registry cannot make (stalls, refusals, corrupt layers, slow blobs) come from
FakeRegistry below: a small registry in front of the sandbox's that forwards everything unless told
otherwise. The engine reaches it over plain HTTP on loopback, which dockerd allows by default.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from bot.core.router import Router
from bot.core.services import Services, build_services
from bot.core.settings import RegistryCredentials, Settings
from bot.engine.hosts import DockerHost, HostPool
from bot.engine.pulling import PullProgress, registry_auth
from bot.render.messages import Message
from bot.render.text import render
from bot.sandbox import Engine, Sandbox, push_image
from handlers import COMMANDS
from handlers.pull import LIVE_INTERVAL
from tests.chat import ChatBot
from tests.conftest import SlackHttpBot, store_of
from tests.fakes.registry import FakeRegistry

# Every test here compares the bot with the docker CLI: once on each engine (tests/conftest.py).
pytestmark = pytest.mark.both_engines

Cli = Callable[..., Any]
LAYER = re.compile(r"^([0-9a-f]{12}): (.*)$")
FINAL_LAYER_STATES = {"Pull complete", "Already exists"}


# --------------------------------------------------------------------------------------- fakes


class RecordingReply:
    """A Reply that keeps what it was asked to send, with the times (not the docker SDK: Slack's side)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float, Message]] = []
        self._lock = threading.Lock()

    def send(self, message: Message, *, live: bool = False) -> int:
        with self._lock:
            self.calls.append(("send", time.monotonic(), message))
            return len(self.calls)

    def update(self, ref: object, message: Message, *, final: bool = False) -> None:
        with self._lock:
            self.calls.append(("final" if final else "update", time.monotonic(), message))

    def private(self, message: Message) -> None:
        with self._lock:
            self.calls.append(("private", time.monotonic(), message))

    @property
    def last(self) -> str:
        return render(self.calls[-1][2])


# --------------------------------------------------------------------------------------- fixtures


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """U111, the Slack user of these tests, may pull (the operator role)."""
    return settings.model_copy(update={"operators": ("U111",)})


@pytest.fixture
def quick_services(settings: Settings, engine: Engine) -> Iterator[Services]:
    """Services whose pulls give up after 1.5 s without progress."""
    services = build_services(settings.model_copy(update={"pull_inactivity_timeout": 1.5}), COMMANDS)
    yield services
    services.close()


@pytest.fixture
def quick_chat(quick_services: Services) -> ChatBot:
    return ChatBot(Router(quick_services))


def fresh_image(sandbox: Sandbox, repo: str = "pulltest/app", layers: int = 3) -> str:
    """A new image in the sandbox registry (not on the engine), as `repo:<unique tag>`."""
    tag = uuid.uuid4().hex[:10]
    files = {"etc/unique": f"{repo}:{tag}\n".encode()}
    push_image(sandbox.engine, sandbox.registry, f"{repo}:{tag}", files, layers=layers)
    return f"{repo}:{tag}"


# --------------------------------------------------------------------------------------- helpers


def final_message(out: str) -> str:
    """The last message the terminal printed (each update is printed whole, then a blank line)."""
    messages = [m for m in out.strip().split("\n\n") if m.strip()]
    return messages[-1]


def line_with(text: str, prefix: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(prefix))


def layer_states(text: str) -> dict[str, str]:
    """Last state per layer id, in CLI output (one line per event) or the bot's (one per layer)."""
    states = {}
    for line in text.splitlines():
        if m := LAYER.match(line):
            states[m[1]] = m[2]
    return states


def repo_digests(cli: Cli, ref: str) -> list[str]:
    return json.loads(cli("image", "inspect", "--format", "{{json .RepoDigests}}", ref).stdout)


def cli_error(cli: Cli, *args: str) -> str:
    done = cli(*args, check=False)
    assert done.returncode != 0
    return done.stderr.strip().splitlines()[-1]


def engine_pull_events(cli: Cli, since: float, until: float, ref: str) -> list[str]:
    out = cli(
        "events",
        "--since",
        f"{since:.3f}",
        "--until",
        f"{until:.3f}",
        "--filter",
        "type=image",
        "--filter",
        "event=pull",
        "--format",
        "{{.Actor.ID}}",
    ).stdout
    return [line for line in out.splitlines() if line == ref]


# --------------------------------------------------------------------------------------- the seed transcript


def test_pull_without_tag_uses_latest_and_matches_the_cli(chat: ChatBot, docker_cli: Cli) -> None:
    docker_cli("rmi", "ubuntu:latest", check=False)
    out = final_message(chat("/docker pull ubuntu"))
    lines = out.splitlines()
    assert lines[0] == "Using default tag: latest"
    assert lines[1] == "latest: Pulling from library/ubuntu"
    assert "Status: Downloaded newer image for ubuntu:latest" in lines
    assert "docker.io/library/ubuntu:latest" in lines
    states = layer_states(out)
    assert states and set(states.values()) <= FINAL_LAYER_STATES, out
    digest = line_with(out, "Digest: ").removeprefix("Digest: ")
    assert f"ubuntu@{digest}" in repo_digests(docker_cli, "ubuntu:latest")

    again = docker_cli("pull", "ubuntu").stdout  # the CLI, now that the image is there
    assert "Status: Image is up to date for ubuntu:latest" in again
    bot_again = final_message(chat("/docker pull ubuntu"))
    assert line_with(bot_again, "Status: ") == line_with(again, "Status: ")
    assert line_with(bot_again, "Digest: ") == line_with(again, "Digest: ")
    assert bot_again.splitlines()[-2] == again.splitlines()[-1] == "docker.io/library/ubuntu:latest"


def test_pull_with_tag_shows_each_layer_like_the_cli(chat: ChatBot, docker_cli: Cli) -> None:
    ref = "openresty/openresty:1.13.6.2-alpine"
    docker_cli("rmi", ref, check=False)
    out = final_message(chat(f"/docker pull {ref}"))
    assert "Using default tag" not in out
    assert out.splitlines()[0] == "1.13.6.2-alpine: Pulling from openresty/openresty"
    assert f"Status: Downloaded newer image for {ref}" in out
    digest = line_with(out, "Digest: ").removeprefix("Digest: ")
    assert f"openresty/openresty@{digest}" in repo_digests(docker_cli, ref)

    docker_cli("rmi", ref)
    cli_out = docker_cli("pull", ref).stdout
    # The classic store pulls all 3 layers; the containerd store shares its content store across
    # images, so a layer another image brought (busybox) is not pulled again and may not be listed.
    assert len(layer_states(out)) == (
        3 if store_of(docker_cli.__self__) == "classic" else len(layer_states(cli_out))
    )
    assert layer_states(out) == layer_states(cli_out)  # same layers, same final state each
    assert line_with(out, "Status: ") == line_with(cli_out, "Status: ")


def test_pull_by_digest(chat: ChatBot, docker_cli: Cli) -> None:
    docker_cli("pull", "ubuntu")
    digest = repo_digests(docker_cli, "ubuntu:latest")[0].split("@")[1]
    out = final_message(chat(f"/docker pull ubuntu@{digest}"))
    cli_out = docker_cli("pull", f"ubuntu@{digest}").stdout
    assert "Using default tag" not in out
    assert line_with(out, "Status: ") == line_with(cli_out, "Status: ")
    assert f"docker.io/library/ubuntu@{digest}" in out.splitlines()


def test_progress_lines_render_both_engine_stores() -> None:
    progress = PullProgress("docker.io")
    events: list[dict[str, Any]] = [
        {"status": "Pulling from library/ubuntu", "id": "latest"},
        {"status": "Pulling fs layer", "progressDetail": {}, "id": "a1b2c3d4e5f6"},
        {"status": "Waiting", "progressDetail": {}, "id": "b1b2c3d4e5f6"},
        {
            "status": "Downloading",
            "progressDetail": {"current": 1_200_000, "total": 3_400_000},
            "id": "a1b2c3d4e5f6",
        },
        # containerd store: extraction counts seconds, and some states hide their counts
        {"status": "Extracting", "progressDetail": {"current": 3, "units": "s"}, "id": "b1b2c3d4e5f6"},
        {"status": "Already exists", "progressDetail": {"hidecounts": True}, "id": "c1b2c3d4e5f6"},
        {
            "status": "Download complete",
            "progressDetail": {"current": 5, "total": 5, "hidecounts": True},
            "id": "d1b2c3d4e5f6",
        },
    ]
    for event in events:
        progress.apply(event)
    assert progress.snapshot().lines == (
        "latest: Pulling from library/ubuntu",
        "a1b2c3d4e5f6: Downloading [=======>             ] 1.2MB/3.4MB",
        "b1b2c3d4e5f6: Extracting 3 s",
        "c1b2c3d4e5f6: Already exists",
        "d1b2c3d4e5f6: Download complete [====================>]",
    )
    progress.apply({"status": "Digest: sha256:" + "0" * 64})
    progress.apply({"status": "Status: Downloaded newer image for ubuntu:latest"})
    snap = progress.snapshot()
    assert snap.digest == "sha256:" + "0" * 64
    assert snap.status == "Status: Downloaded newer image for ubuntu:latest"


# --------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("text", ["UPPER", '"a b"', "ubuntu:tag:extra", "-x"])
def test_invalid_references_never_reach_the_engine(chat: ChatBot, docker_cli: Cli, text: str) -> None:
    before = chat.services.pulls.engine_pulls
    out = chat(f"/docker pull {text}").strip()
    assert chat.services.pulls.engine_pulls == before
    if text == "-x":  # an option, not a name: a usage reply
        assert "Usage:" in out
        return
    assert out == cli_error(docker_cli, "pull", text.strip('"'))
    assert out.startswith("invalid reference format")


def test_missing_tag_gets_the_engines_text(chat: ChatBot, docker_cli: Cli, sandbox: Sandbox) -> None:
    ref = f"{sandbox.registry.address}/library/ubuntu:nope"
    out = final_message(chat(f"/docker pull {ref}"))
    expected = cli_error(docker_cli, "pull", ref)
    if store_of(docker_cli.__self__) == "classic":  # type: ignore[attr-defined]
        assert expected.startswith(f"Error response from daemon: manifest for {ref} not found")
    else:  # the containerd store's resolver words it differently
        assert expected.startswith(f'Error response from daemon: failed to resolve reference "{ref}"')
    assert expected in out.splitlines()
    assert "no such tag" in out  # the hint


@pytest.mark.parametrize("ref", ["nosuchrepo", "ubuntu:nope"])
def test_hub_names_get_what_the_engine_says(chat: ChatBot, docker_cli: Cli, ref: str) -> None:
    # In the sandbox the engine falls back from its mirror to Docker Hub, which is out of reach:
    # whatever it says, the bot says the same as the CLI.
    out = final_message(chat(f"/docker pull {ref}"))
    assert cli_error(docker_cli, "pull", ref) in out.splitlines()


def test_access_denied(chat: ChatBot, docker_cli: Cli, fake_registry: FakeRegistry) -> None:
    fake_registry.deny = True
    ref = f"{fake_registry.address}/x/y:1"
    out = final_message(chat(f"/docker pull {ref}"))
    expected = cli_error(docker_cli, "pull", ref)
    assert expected in out.splitlines()
    if store_of(docker_cli.__self__) == "classic":  # type: ignore[attr-defined]
        assert expected.startswith(
            f"Error response from daemon: pull access denied for {fake_registry.address}/x/y, "
            "repository does not exist or may require 'docker login'"
        )
        assert "Check the image name" in out
    else:
        # The containerd store's resolver reports the refused token request instead.
        assert "failed to authorize" in expected
        assert "wants credentials" in out


def test_registry_unreachable(chat: ChatBot, docker_cli: Cli) -> None:
    ref = "127.0.0.1:1/x/y:1"
    out = final_message(chat(f"/docker pull {ref}"))
    assert cli_error(docker_cli, "pull", ref) in out.splitlines()
    assert "could not reach the registry 127.0.0.1:1" in out


def test_corrupt_layer_fails_mid_stream(
    chat: ChatBot, docker_cli: Cli, sandbox: Sandbox, fake_registry: FakeRegistry
) -> None:
    fake_registry.corrupt_layers = True
    ref = f"{fake_registry.address}/{fresh_image(sandbox, layers=2)}"
    out = final_message(chat(f"/docker pull {ref}"))
    expected = cli_error(docker_cli, "pull", ref)
    # Mid-stream errors are printed bare by the CLI (no "Error response from daemon:"), and so here.
    if store_of(docker_cli.__self__) == "classic":  # type: ignore[attr-defined]
        assert "verification failed" in expected
        error = line_with(out, "filesystem layer verification failed")
        assert error.split(" for digest ")[0] == expected.split(" for digest ")[0]
    else:  # the containerd store checks the digest when it commits the blob to its content store
        assert "unexpected commit digest" in expected

        # Layers are fetched in parallel there: which corrupt layer fails first varies from pull to
        # pull, so the digests are compared as a shape, the words exactly.
        def shape(text: str) -> str:
            return re.sub(r"sha256:[0-9a-f]{64}", "sha256:<digest>", text)

        assert shape(line_with(out, "failed commit on ref")) == shape(expected)
    assert layer_states(out), out  # the progress until the failure stays in the message


def test_stalled_registry_ends_the_pull(quick_chat: ChatBot, fake_registry: FakeRegistry) -> None:
    fake_registry.stall_manifests = True
    started = time.monotonic()
    out = final_message(quick_chat(f"/docker pull {fake_registry.address}/x/y:1"))
    took = time.monotonic() - started
    assert "No progress from the registry for 1.5 s; the pull was stopped." in out
    assert 1.5 <= took < 5
    assert fake_registry.requests("manifests")  # it did reach the registry, which then said nothing
    assert quick_chat.services.pulls.in_flight() == []


def test_registry_stalling_mid_stream_ends_the_pull(
    quick_chat: ChatBot, sandbox: Sandbox, fake_registry: FakeRegistry, engine: Engine
) -> None:
    fake_registry.stall_blobs = True
    ref = f"{fake_registry.address}/{fresh_image(sandbox)}"
    started = time.monotonic()
    out = final_message(quick_chat(f"/docker pull {ref}"))
    assert time.monotonic() - started < 6
    assert "No progress from the registry for 1.5 s; the pull was stopped." in out
    assert "Pulling from pulltest/app" in out  # the progress made before the stall
    if store_of(engine) == "classic":
        # The classic store has announced each layer by then; the containerd store announces a layer
        # only once its download has made progress, so a stall on the first bytes shows none.
        assert layer_states(out)


def test_engine_down_is_said_in_the_pull_message(services: Services) -> None:
    services.hosts = HostPool([DockerHost(name="local", url="unix:///nonexistent/dockerbot-pull.sock")])
    out = ChatBot(Router(services))("/docker pull busybox")
    final = final_message(out)
    assert "Cannot reach the Docker engine on host local" in final
    assert "unexpected" not in out and "Traceback" not in out
    assert services.pulls.in_flight() == []


# --------------------------------------------------------------------------------------- sharing


def test_two_pulls_of_one_image_share_one_engine_pull(
    router: Router, docker_cli: Cli, sandbox: Sandbox, fake_registry: FakeRegistry
) -> None:
    fake_registry.manifest_delay = 1.5  # the first pull is still running when the second asks
    ref = f"{fake_registry.address}/{fresh_image(sandbox)}"
    replies = [RecordingReply(), RecordingReply()]
    before = router.services.pulls.engine_pulls
    since = time.time()

    def ask(reply: RecordingReply) -> None:
        router.handle(f"pull {ref}", user="U1", channel="C1", reply=reply, local=True)

    threads = [threading.Thread(target=ask, args=(r,)) for r in replies]
    threads[0].start()
    time.sleep(0.3)
    threads[1].start()
    for t in threads:
        t.join(30)
    until = time.time() + 1
    assert router.services.pulls.engine_pulls == before + 1
    assert len(engine_pull_events(docker_cli, since, until, ref)) == 1
    # One engine pull asks for each manifest once (HEAD by tag, GET by tag, GET by digest).
    asked = Counter((method, path) for method, path, _ in fake_registry.requests("manifests"))
    assert asked and set(asked.values()) == {1}, asked
    for reply in replies:
        assert f"Status: Downloaded newer image for {ref}" in reply.last
    assert "already running" in replies[1].last
    assert "already running" not in replies[0].last


def test_a_pull_after_a_finished_one_starts_afresh(chat: ChatBot, docker_cli: Cli) -> None:
    docker_cli("pull", "busybox")
    before = chat.services.pulls.engine_pulls
    chat("/docker pull busybox")
    chat("/docker pull busybox")
    assert chat.services.pulls.engine_pulls == before + 2


# --------------------------------------------------------------------------------------- Slack


def test_slack_pull_is_one_message_updated_at_most_once_a_second(
    slack_http: SlackHttpBot, sandbox: Sandbox, fake_registry: FakeRegistry
) -> None:
    fake_registry.blob_delay = 0.6  # blobs arrive over ~2.5 s, so there is progress to show
    ref = f"{fake_registry.address}/{fresh_image(sandbox)}"
    status, _ = slack_http.command(f"pull {ref}", channel="CPULL")
    assert status == 200
    slack = slack_http.slack
    slack.wait_for("chat.update", lambda c: "Status: " in c.body["text"], timeout=30)
    posts = [c for c in slack.calls("chat.postMessage") if c.body.get("channel") == "CPULL"]
    assert len(posts) == 1
    ts = posts[0].response["ts"]
    updates = [c for c in slack.calls("chat.update") if c.body.get("ts") == ts]
    assert len(updates) >= 2  # progress, then the result
    times = [posts[0].at] + [c.at for c in updates]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= LIVE_INTERVAL, gaps
    last = json.dumps(updates[-1].body["blocks"])
    assert "Digest: sha256:" in last and f"Status: Downloaded newer image for {ref}" in last
    assert all("Status: " not in c.body["text"] for c in updates[:-1])


# --------------------------------------------------------------------------------------- auth, buttons


def test_registry_credentials_are_used_and_never_shown(
    settings: Settings,
    engine: Engine,
    sandbox: Sandbox,
    fake_registry: FakeRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    password = "s3cret-" + uuid.uuid4().hex
    fake_registry.basic_auth = ("bot", password)
    ref = f"{fake_registry.address}/{fresh_image(sandbox, layers=2)}"
    creds = {fake_registry.address: RegistryCredentials(username="bot", password=SecretStr(password))}
    with_auth = build_services(settings.model_copy(update={"registry_auth": creds}), COMMANDS)
    without = build_services(settings, COMMANDS)
    try:
        refused = final_message(ChatBot(Router(without))(f"/docker pull {ref}"))
        assert "Error response from daemon: " in refused
        assert "credentials" in refused
        out = final_message(ChatBot(Router(with_auth))(f"/docker pull {ref}"))
        assert f"Status: Downloaded newer image for {ref}" in out
    finally:
        with_auth.close()
        without.close()
    basic = base64.b64encode(f"bot:{password}".encode()).decode()
    assert any(auth == f"Basic {basic}" for _, _, auth in fake_registry.seen)
    for text in (out, refused, caplog.text):
        assert password not in text and basic not in text


def test_registry_auth_reads_settings() -> None:
    creds = RegistryCredentials(username="u", password=SecretStr("pw-42"))
    settings = Settings(data_dir="/tmp/x").model_copy(
        update={"registry_auth": {"docker.io": creds, "r:5000": creds}}
    )
    assert registry_auth(settings, "docker.io") == {
        "username": "u",
        "password": "pw-42",
        "serveraddress": "docker.io",
    }
    assert registry_auth(settings, "r:5000") == {
        "username": "u",
        "password": "pw-42",
        "serveraddress": "r:5000",
    }
    assert registry_auth(settings, "other:5000") is None
    assert registry_auth(object(), "docker.io") is None  # settings without the key
    assert "pw-42" not in repr(settings.registry_auth)


def test_pull_button_pulls_the_named_image(router: Router, docker_cli: Cli) -> None:
    docker_cli("pull", "alpine")
    reply = RecordingReply()
    router.press("dockerbot:pull.start", "alpine", user="U111", channel="C1", message=None, reply=reply)  # type: ignore[arg-type]
    assert reply.calls[0][0] == "send"
    assert "Status: Image is up to date for alpine:latest" in reply.last


@pytest.mark.parametrize("value", ["alpine; rm -rf /", "UPPER", "", "$(id)"])
def test_pull_button_refuses_anything_but_a_name(router: Router, value: str) -> None:
    before = router.services.pulls.engine_pulls
    reply = RecordingReply()
    router.press("dockerbot:pull.start", value, user="U111", channel="C1", message=None, reply=reply)  # type: ignore[arg-type]
    assert router.services.pulls.engine_pulls == before
    assert [kind for kind, _, _ in reply.calls] == ["private"]
    assert "invalid reference format" in reply.last


def test_pull_button_needs_the_operator_role(router: Router) -> None:
    before = router.services.pulls.engine_pulls
    reply = RecordingReply()
    router.press("dockerbot:pull.start", "alpine", user="U2", channel="C1", message=None, reply=reply)  # type: ignore[arg-type]
    assert router.services.pulls.engine_pulls == before
    assert [kind for kind, _, _ in reply.calls] == ["private"]
    assert "needs the operator role on host local" in reply.last
