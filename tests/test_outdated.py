"""/docker outdated against a real engine and the sandbox's real registry (the engine's Docker Hub
mirror, and the bot's Docker Hub registry through DOCKERBOT_HUB_REGISTRY_URL). The docker CLI on the
same engine is the oracle for local digests; the registry's own API for what it has. Every engine
test runs on both engines of the matrix (the classic overlay2 store and the containerd store).
"""

from __future__ import annotations

import json
import logging
import socket
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bot.core.router import Router
from bot.core.services import Services, build_services
from bot.core.settings import RegistryCredentials, Settings
from bot.engine.reference import parse_reference
from bot.engine.registry import ACCEPT, CURRENT, GONE, UNKNOWN, RegistryClient, _parse_challenge
from bot.jobs.outdated import Changes, compare, merge_unsure
from bot.jobs.scheduler import Scheduler
from bot.render.messages import Message
from bot.render.text import render
from bot.sandbox import Sandbox, push_image
from handlers import COMMANDS
from tests.chat import ChatBot
from tests.fakes.registry import FakeRegistry

pytestmark = pytest.mark.both_engines

DIGEST = "sha256:" + "ab" * 32


# --------------------------------------------------------------------------------------- helpers


def push(sandbox: Sandbox, ref: str, build: str) -> None:
    """A build of `ref` (a Hub-style name or a registry path) in the sandbox registry, unique by `build`."""
    push_image(sandbox.engine, sandbox.registry, ref, {"etc/build": f"{ref} {build}\n".encode()})


def fresh_repo(prefix: str = "outdatedtest") -> str:
    return f"{prefix}/app{uuid.uuid4().hex[:8]}"


def pulled_repo(sandbox: Sandbox, docker_cli: Any) -> str:
    """A new repository whose `v1` the engine pulled: up to date here."""
    repo = fresh_repo()
    push(sandbox, f"{repo}:v1", "one")
    docker_cli("pull", f"{repo}:v1")
    return repo


def stale_repo(sandbox: Sandbox, docker_cli: Any) -> str:
    """A new repository whose `v1` the engine pulled, then rebuilt upstream: outdated here."""
    repo = pulled_repo(sandbox, docker_cli)
    push(sandbox, f"{repo}:v1", "two")
    return repo


def two_hosts(tmp_path: Path, engine: Any) -> Path:
    """A bot config with hosts `one` and `two`, both the test engine."""
    config = tmp_path / "hosts.yml"
    url = engine.docker_host
    config.write_text(json.dumps({"hosts": {"one": {"url": url}, "two": {"url": url}}}))
    return config


def registry_digest(sandbox: Sandbox, path: str, tag: str) -> str:
    request = urllib.request.Request(
        f"{sandbox.registry.url}/v2/{path}/manifests/{tag}", method="HEAD", headers={"Accept": ACCEPT}
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return str(resp.headers["Docker-Content-Digest"])


def delete_tag(sandbox: Sandbox, path: str, tag: str) -> None:
    """The registry API's DELETE by digest (the sandbox registry allows deletes)."""
    digest = registry_digest(sandbox, path, tag)
    request = urllib.request.Request(f"{sandbox.registry.url}/v2/{path}/manifests/{digest}", method="DELETE")
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 202


def repo_digests(cli: Any, ref: str) -> list[str]:
    return json.loads(cli("image", "inspect", "--format", "{{json .RepoDigests}}", ref).stdout)


def short(digest: str) -> str:
    return digest[: len("sha256:") + 12]


def row_of(text: str, image: str) -> str:
    return next(line for line in text.splitlines() if line.split()[:1] == [image])


def containerd_store(cli: Any) -> bool:
    """Whether the engine under test runs the containerd image store (the CLI says so in info)."""
    return "containerd.snapshotter" in cli("info", "--format", "{{json .DriverStatus}}").stdout


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------------------- fixtures


@pytest.fixture
def settings(settings: Settings, sandbox: Sandbox) -> Settings:
    """Docker Hub names are looked up in the sandbox registry, which is also the engine's mirror."""
    return settings.model_copy(update={"hub_registry_url": sandbox.registry.url, "operators": ("U111",)})


def chat_with(settings: Settings, **changes: Any) -> Iterator[ChatBot]:
    services = build_services(settings.model_copy(update=changes), COMMANDS)
    try:
        yield ChatBot(Router(services))
    finally:
        services.close()


@pytest.fixture
def via_fake(settings: Settings, fake_registry: FakeRegistry) -> Iterator[ChatBot]:
    """A bot whose Docker Hub registry is the fake in front of the sandbox registry."""
    yield from chat_with(settings, hub_registry_url=f"http://{fake_registry.address}")


# --------------------------------------------------------------------------------------- the check


def test_a_new_build_upstream_is_listed_and_pulling_it_clears_it(
    chat: ChatBot, sandbox: Sandbox, docker_cli: Any
) -> None:
    repo = fresh_repo()
    push(sandbox, f"{repo}:v1", "first")
    docker_cli("pull", f"{repo}:v1")
    out = chat(f"/docker outdated {repo}")
    assert f"No outdated {repo} on host local" in out
    assert "1 up to date" in out

    push(sandbox, f"{repo}:v1", "second")  # the tag moves upstream
    [local] = repo_digests(docker_cli, f"{repo}:v1")
    upstream = registry_digest(sandbox, repo, "v1")
    assert local.split("@")[1] != upstream
    created = docker_cli("image", "inspect", "--format", "{{.Created}}", f"{repo}:v1").stdout.strip()
    assert created

    out = chat("/docker outdated")
    assert "outdated image" in out
    row = row_of(out, repo).split()
    assert row[:2] == [repo, "v1"]
    assert row[2] == short(local.split("@")[1]), "the local digest is the one the image was pulled by"
    assert short(upstream) in row, "the registry's digest for the tag now"
    assert row[-1] == "local", "the hosts affected"
    assert "[Pull " + repo + ":v1]" in out

    # The Pull button (operators) pulls that tag on the hosts whose copy is behind.
    refused = chat.press_as(f"pull {repo}:v1", "U999")
    assert "operator" in refused and "Nothing was changed" in refused
    assert repo_digests(docker_cli, f"{repo}:v1") == [local]
    pulled = chat.press_as(f"pull {repo}:v1", "U111")
    assert f"Status: Downloaded newer image for {repo}:v1" in pulled
    assert repo_digests(docker_cli, f"{repo}:v1") == [f"{repo}@{upstream}"]

    out = chat(f"/docker outdated {repo}:v1")
    assert f"No outdated {repo}:v1 on host local" in out and "1 up to date" in out


def test_a_tag_deleted_upstream_is_gone_upstream(chat: ChatBot, sandbox: Sandbox, docker_cli: Any) -> None:
    repo = fresh_repo()
    push(sandbox, f"{repo}:old", "only")
    docker_cli("pull", f"{repo}:old")
    delete_tag(sandbox, repo, "old")
    out = chat(f"/docker outdated {repo}")
    assert "Gone upstream (1)" in out
    assert row_of(out, repo).split() == [repo, "old", "local"]
    assert "[Pull" not in out, "nothing to pull for a tag that is gone"


def test_an_image_built_here_is_not_from_a_registry(chat: ChatBot, sandbox: Sandbox, docker_cli: Any) -> None:
    repo = fresh_repo()
    push(sandbox, f"{repo}:v1", "base")
    docker_cli("pull", f"{repo}:v1")
    local_name = fresh_repo("builtlocally")
    docker_cli("tag", f"{repo}:v1", f"{local_name}:dev")
    out = chat(f"/docker outdated {local_name}")
    if containerd_store(docker_cli):
        # That store records `local_name@<image ID>` for a tag made here, as for a pull: it is asked for.
        assert f"{local_name}@" in " ".join(repo_digests(docker_cli, f"{local_name}:dev"))
        assert "Gone upstream (1)" in out and "built or tagged locally looks the same" in out
        assert "1 tag looked up with 1 registry request" in out
    else:
        assert not [d for d in repo_digests(docker_cli, f"{local_name}:dev") if d.startswith(local_name)]
        assert "1 not from a registry (built or loaded locally)" in out
        assert "0 tags looked up with 0 registry requests" in out


def test_registry_down_makes_each_image_unknown_without_an_error(
    settings: Settings, sandbox: Sandbox, docker_cli: Any
) -> None:
    repo = pulled_repo(sandbox, docker_cli)
    for chat in chat_with(settings, hub_registry_url=f"http://127.0.0.1:{closed_port()}"):
        out = chat(f"/docker outdated {repo}")
        assert "Unknown (1)" in out
        assert "registry unreachable (connection refused)" in row_of(out, repo)
        assert "went wrong" not in out and "error id" not in out


def test_rate_limited_registry_is_unknown(
    via_fake: ChatBot, fake_registry: FakeRegistry, sandbox: Sandbox, docker_cli: Any
) -> None:
    repo = pulled_repo(sandbox, docker_cli)
    fake_registry.rate_limited = True
    out = via_fake(f"/docker outdated {repo}")
    assert "registry rate limit reached (429)" in row_of(out, repo)
    assert [m for m, _, _ in fake_registry.requests("manifests")] == ["HEAD"], "a HEAD, never a GET"


def test_a_stalled_registry_is_unknown_after_the_timeout(
    settings: Settings, fake_registry: FakeRegistry, sandbox: Sandbox, docker_cli: Any
) -> None:
    repo = pulled_repo(sandbox, docker_cli)
    fake_registry.stall_manifests = True
    hub = f"http://{fake_registry.address}"
    for chat in chat_with(settings, hub_registry_url=hub, registry_timeout=1):
        out = chat(f"/docker outdated {repo}")
        assert "registry did not answer within 1 s" in row_of(out, repo)


def test_docker_hub_token_flow(
    via_fake: ChatBot, fake_registry: FakeRegistry, sandbox: Sandbox, docker_cli: Any
) -> None:
    repo = stale_repo(sandbox, docker_cli)
    fake_registry.token_auth = True
    out = via_fake(f"/docker outdated {repo}")
    assert short(registry_digest(sandbox, repo, "v1")) in row_of(out, repo)
    tokens = [p for _, p, _ in fake_registry.seen if p.startswith("/token")]
    assert tokens == [f"/token?scope=repository%3A{repo.replace('/', '%2F')}%3Apull&service=fake-registry"]
    heads = fake_registry.requests("manifests")
    assert [(m, a) for m, _, a in heads] == [("HEAD", ""), ("HEAD", f"Bearer {FakeRegistry.TOKEN}")]
    assert FakeRegistry.TOKEN not in out


def test_docker_hub_token_flow_with_credentials(
    settings: Settings, fake_registry: FakeRegistry, sandbox: Sandbox, docker_cli: Any
) -> None:
    repo = pulled_repo(sandbox, docker_cli)
    fake_registry.token_auth = True
    fake_registry.token_credentials = ("alice", "hub-pw-9")
    hub = f"http://{fake_registry.address}"
    for chat in chat_with(settings, hub_registry_url=hub):
        out = chat(f"/docker outdated {repo}")
        assert "registry's token service refused anonymous access" in row_of(out, repo)
    creds = {"docker.io": RegistryCredentials(username="alice", password=SecretStr("hub-pw-9"))}
    for chat in chat_with(settings, hub_registry_url=hub, registry_auth=creds):
        out = chat(f"/docker outdated {repo}")
        assert f"No outdated {repo} on host local" in out and "1 up to date" in out
        assert "hub-pw-9" not in out + chat("/docker audit 20")


def test_private_registry_with_credentials(
    settings: Settings,
    fake_registry: FakeRegistry,
    sandbox: Sandbox,
    docker_cli: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = f"team/app{uuid.uuid4().hex[:8]}"
    push(sandbox, f"{path}:v1", "one")
    name = f"{fake_registry.address}/{path}"
    docker_cli("pull", f"{name}:v1")  # before the fake wants credentials
    fake_registry.basic_auth = ("bob", "s3cret-pw")
    push(sandbox, f"{path}:v1", "two")
    caplog.set_level(logging.DEBUG)

    for chat in chat_with(settings):
        out = chat(f"/docker outdated {name}")
        assert "registry wants credentials; the bot has none for it" in row_of(out, name)

    creds = {fake_registry.address: RegistryCredentials(username="bob", password=SecretStr("wrong"))}
    for chat in chat_with(settings, registry_auth=creds):
        out = chat(f"/docker outdated {name}")
        assert "registry refused the bot's credentials" in row_of(out, name)

    creds = {fake_registry.address: RegistryCredentials(username="bob", password=SecretStr("s3cret-pw"))}
    for chat in chat_with(settings, registry_auth=creds):
        out = chat(f"/docker outdated {name}")
        row = row_of(out, name)
        assert short(registry_digest(sandbox, path, "v1")) in row
        audit = chat("/docker audit 50")
    for text in (out, audit, caplog.text):
        assert "s3cret-pw" not in text and "czNjcmV0LXB3" not in text  # nor its base64


def test_one_request_per_distinct_tag_across_the_fleet(
    settings: Settings,
    fake_registry: FakeRegistry,
    sandbox: Sandbox,
    engine: Any,
    docker_cli: Any,
    tmp_path: Any,
) -> None:
    repo = fresh_repo()
    for tag in ("a", "b"):
        push(sandbox, f"{repo}:{tag}", tag)
        docker_cli("pull", f"{repo}:{tag}")
    docker_cli("tag", f"{repo}:a", f"{repo}:c")  # a tag never pushed: gone upstream
    # Two configured hosts on the one engine: every tag is on both. A third is down.
    config = tmp_path / "hosts.yml"
    url = engine.docker_host
    dead = f"unix://{tmp_path}/no-engine.sock"
    hosts = {"one": {"url": url}, "two": {"url": url}, "dead": {"url": dead}}
    config.write_text(json.dumps({"hosts": hosts}))
    for chat in chat_with(settings, config=config, hub_registry_url=f"http://{fake_registry.address}"):
        out = chat(f"/docker outdated {repo} --host all")
        assert "No outdated" in out and "on 3 hosts (some could not be checked)" in out
        assert "4 up to date" in out
        assert "dead — not checked: the engine's socket does not exist" in out
        assert "Gone upstream (1)" in out and row_of(out, repo).split() == [repo, "c", "one,two"]
        assert "3 tags looked up with 3 registry requests" in out
    assert len(fake_registry.requests("manifests")) == 3


# --------------------------------------------------------------------------------------- input


@pytest.mark.parametrize(
    "line, says",
    [
        ("/docker outdated UPPER", "must be lowercase"),
        ("/docker outdated ubuntu@" + DIGEST, "digest names one image"),
        ("/docker outdated ubuntu redis", "say one image at most"),
        ("/docker outdated ubuntu --channel C1", "say one image at most"),
        ("/docker outdated schedule", "needs a cron expression"),
        ("/docker outdated cancel", "needs a schedule id"),
        ("/docker outdated list --tz UTC", "takes no --channel or --tz"),
        ("/docker outdated --nope", "unrecognized arguments"),
    ],
)
def test_bad_input_gets_a_short_usage_reply(chat: ChatBot, line: str, says: str) -> None:
    out = chat(line)
    assert says in out.lower() and "Usage:" in out
    assert "Traceback" not in out and len(out) < 1200


def test_scheduling_needs_an_admin(chat: ChatBot) -> None:
    out = chat.say_as('outdated schedule "0 8 * * 1"', "U111")
    assert "needs the admin role" in out and "Scheduled" not in out


# --------------------------------------------------------------------------------------- schedule


class Inbox:
    def __init__(self) -> None:
        self.posted: list[tuple[str, Message]] = []

    def post(self, channel: str, message: Message) -> None:
        self.posted.append((channel, message))


def test_a_schedule_posts_only_when_the_set_changes(
    chat: ChatBot, services: Services, sandbox: Sandbox, clean_engine: Any, docker_cli: Any
) -> None:
    from bot.state.delivery import Delivery

    repo = stale_repo(sandbox, docker_cli)
    inbox = Inbox()
    scheduler = Scheduler(services, Delivery(services.store.engine, inbox))
    scheduler.start(paused=True)
    services.scheduler = scheduler
    try:
        out = chat('/docker outdated schedule "0 8 * * 1" --channel C0OPS')
        assert "posts to" in out and "only when the set of outdated images changes" in out
        [made] = scheduler.list("outdated")
        assert made.channel == "C0OPS"
        assert made.id in chat("/docker outdated list")

        scheduler.run(made.id)
        assert len(inbox.posted) == 1
        channel, first = inbox.posted[0]
        assert channel == "C0OPS" and repo in render(first) and f"new: {repo}:v1 on local" in render(first)

        scheduler.run(made.id)  # nothing changed
        assert len(inbox.posted) == 1, "a run with no change posts nothing"
        audit = chat("/docker audit 5")
        assert "outdated.scheduled" in audit and "nothing new" in audit

        # The registry is down for a run: what it could not tell is no change either.
        working = services.settings
        services.settings = working.model_copy(
            update={"hub_registry_url": f"http://127.0.0.1:{closed_port()}"}
        )
        try:
            scheduler.run(made.id)
        finally:
            services.settings = working
        assert len(inbox.posted) == 1
        assert "nothing new" in chat("/docker audit 1") and "1 unknown" in chat("/docker audit 1")

        docker_cli("pull", f"{repo}:v1")  # someone updated it
        scheduler.run(made.id)
        assert len(inbox.posted) == 2
        assert f"no longer outdated: {repo}:v1 on local" in render(inbox.posted[1][1])

        assert f"Cancelled outdated schedule {made.id}" in chat(f"/docker outdated cancel {made.id}")
        assert scheduler.list("outdated") == []
    finally:
        services.scheduler = None
        scheduler.shutdown()


# --------------------------------------------------------------------------------------- units


def test_challenge_parsing() -> None:
    hub = _parse_challenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/ubuntu:pull"'
    )
    assert hub is not None and hub.scheme == "bearer"
    assert hub.params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/ubuntu:pull",
    }
    basic = _parse_challenge('Basic realm="Registry Realm"')
    assert basic is not None and basic.scheme == "basic"
    assert _parse_challenge("Negotiate abc") is None


def test_unknown_is_not_a_change() -> None:
    last = {"a|docker.io/library/x:1": {"state": "outdated", "local": "l", "remote": "r"}}
    # The registry could not tell this time: the last post's entry stands.
    now = merge_unsure({}, {"a|docker.io/library/x:1"}, [], last)
    assert not compare(last, now)
    # The host was down: the same.
    assert not compare(last, merge_unsure({}, set(), ["a"], last))
    # Known and gone from the list: a change.
    assert compare(last, merge_unsure({}, set(), [], last)) == Changes([], [], ["x:1 on a"])
    moved = {"a|docker.io/library/x:1": {"state": "outdated", "local": "l", "remote": "r2"}}
    assert compare(last, moved) == Changes([], ["x:1 on a"], [])


def test_lookup_states_against_the_sandbox_registry(sandbox: Sandbox) -> None:
    repo = fresh_repo()
    push(sandbox, f"{repo}:v1", "x")
    from bot import metrics

    def counted(state: str) -> float:
        return metrics.REGISTRY.get_sample_value("dockerbot_registry_lookups_total", {"state": state}) or 0.0

    before = {state: counted(state) for state in (CURRENT, GONE, UNKNOWN)}
    with RegistryClient(hub_registry_url=sandbox.registry.url) as client:
        found = client.lookup(parse_reference(f"{repo}:v1"))
        assert found.state == CURRENT and found.digest == registry_digest(sandbox, repo, "v1")
        assert client.lookup(parse_reference(f"{repo}:nosuch")).state == GONE
        assert client.lookup(parse_reference(f"{repo}:v1")) is found, "cached for the run"
        assert client.requests == 2
    with RegistryClient(hub_registry_url=f"http://127.0.0.1:{closed_port()}", timeout=2) as client:
        down = client.lookup(parse_reference(f"{repo}:v1"))
        assert down.state == UNKNOWN and "unreachable" in down.reason
    after = {state: counted(state) for state in (CURRENT, GONE, UNKNOWN)}
    assert after == {CURRENT: before[CURRENT] + 1, GONE: before[GONE] + 1, UNKNOWN: before[UNKNOWN] + 1}


# --------------------------------------------------------------------------------------- multi-platform


def put_index(sandbox: Sandbox, path: str, tag: str, platforms: dict[str, str]) -> str:
    """A multi-platform tag (a Docker manifest list) over tags already in `path`, as `docker buildx`
    pushes one; returns its digest."""
    entries = []
    for arch, source_tag in platforms.items():
        request = urllib.request.Request(
            f"{sandbox.registry.url}/v2/{path}/manifests/{source_tag}",
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            body = resp.read()
            entries.append(
                {
                    "mediaType": resp.headers["Content-Type"],
                    "size": len(body),
                    "digest": resp.headers["Docker-Content-Digest"],
                    "platform": {"architecture": arch, "os": "linux"},
                }
            )
    media = "application/vnd.docker.distribution.manifest.list.v2+json"
    index = json.dumps({"schemaVersion": 2, "mediaType": media, "manifests": entries}).encode()
    request = urllib.request.Request(
        f"{sandbox.registry.url}/v2/{path}/manifests/{tag}",
        data=index,
        method="PUT",
        headers={"Content-Type": media},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 201
        return str(resp.headers["Docker-Content-Digest"])


def test_a_multi_platform_tag_compares_the_index_digest(
    chat: ChatBot, sandbox: Sandbox, docker_cli: Any
) -> None:
    repo = fresh_repo()
    for tag in ("amd-1", "arm-1", "amd-2"):
        push(sandbox, f"{repo}:{tag}", tag)
    first = put_index(sandbox, repo, "multi", {"amd64": "amd-1", "arm64": "arm-1"})
    docker_cli("pull", f"{repo}:multi")
    assert repo_digests(docker_cli, f"{repo}:multi") == [f"{repo}@{first}"], "pulled by the index digest"
    out = chat(f"/docker outdated {repo}:multi")
    assert f"No outdated {repo}:multi on host local" in out and "1 up to date" in out

    second = put_index(sandbox, repo, "multi", {"amd64": "amd-2", "arm64": "arm-1"})
    out = chat(f"/docker outdated {repo}:multi")
    row = row_of(out, repo).split()
    assert row[:3] == [repo, "multi", short(first)] and short(second) in row


# --------------------------------------------------------------------------------------- through Slack


def test_through_slack_each_pull_button_is_its_own_action(
    slack_http: Any, sandbox: Sandbox, docker_cli: Any
) -> None:
    import time

    from tests.fakes.slack_requests import block_actions_body, block_actions_payload, post_signed

    repo = fresh_repo()
    for tag in ("a", "b"):
        push(sandbox, f"{repo}:{tag}", "one")
        docker_cli("pull", f"{repo}:{tag}")
        push(sandbox, f"{repo}:{tag}", "two")
    status, _ = slack_http.command(f"outdated {repo}", user="U111", tag="card")
    assert status == 200
    [call] = slack_http.slack.wait_for("response_url", lambda c: c.tag == "card")
    card = call.body
    assert card["response_type"] == "in_channel"
    buttons = [el for b in card["blocks"] if b["type"] == "actions" for el in b["elements"]]
    assert [b["text"]["text"] for b in buttons] == [f"Pull {repo}:a", f"Pull {repo}:b"]
    assert len({b["action_id"] for b in buttons}) == 2, "Slack wants unique action_ids"

    payload = block_actions_payload(
        buttons[1]["action_id"],
        buttons[1]["value"],
        user_id="U111",
        response_url=slack_http.slack.response_url("pull"),
        message=card,
    )
    assert post_signed(slack_http.url, block_actions_body(payload), slack_http.secret)[0] == 200
    upstream = registry_digest(sandbox, repo, "b")
    deadline = time.monotonic() + 20
    while repo_digests(docker_cli, f"{repo}:b") != [f"{repo}@{upstream}"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert repo_digests(docker_cli, f"{repo}:b") == [f"{repo}@{upstream}"]
    assert repo_digests(docker_cli, f"{repo}:a") != [f"{repo}@{registry_digest(sandbox, repo, 'a')}"]


def test_a_fleet_schedule_posts_one_list_for_all_hosts(
    settings: Settings, sandbox: Sandbox, engine: Any, docker_cli: Any, tmp_path: Any
) -> None:
    from bot.state.delivery import Delivery

    repo = stale_repo(sandbox, docker_cli)
    config = two_hosts(tmp_path, engine)
    services = build_services(settings.model_copy(update={"config": config}), COMMANDS)
    inbox = Inbox()
    scheduler = Scheduler(services, Delivery(services.store.engine, inbox))
    scheduler.start(paused=True)
    services.scheduler = scheduler
    try:
        chat = ChatBot(Router(services))
        assert "for host all." in chat('/docker outdated schedule "0 8 * * 1" --host all')
        [made] = scheduler.list("outdated")
        scheduler.run(made.id)
        [(_, message)] = inbox.posted
        text = render(message)
        assert "outdated images on 2 hosts" in text or "outdated image on 2 hosts" in text
        assert row_of(text, repo).split()[-1] == "one,two", "one row, both hosts"
        assert f"{repo}:v1 on one" in text and f"{repo}:v1 on two" in text
        scheduler.run(made.id)
        assert len(inbox.posted) == 1
    finally:
        services.scheduler = None
        scheduler.shutdown()
        services.close()


def test_pull_buttons_keep_slacks_limits() -> None:
    from bot.engine.registry import RemoteDigest
    from bot.jobs.outdated import MAX_BUTTONS, Finding, pull_buttons

    def finding(name: str, hosts: int) -> Finding:
        rows = [(f"host-{i:04d}", DIGEST, None) for i in range(hosts)]
        return Finding(parse_reference(name), "outdated", RemoteDigest(CURRENT, DIGEST), rows)

    many = [finding(f"app{i}:v1", 2) for i in range(MAX_BUTTONS + 3)]
    wide = finding("wide:v1", 300)  # its hosts do not fit in a button's value
    buttons = [el for block in pull_buttons([wide, *many]) for el in block["elements"]]
    assert len(buttons) == MAX_BUTTONS and buttons[0]["text"]["text"] == "Pull app0:v1"
    assert len({b["action_id"] for b in buttons}) == MAX_BUTTONS
    assert all(len(b["value"]) <= 2000 for b in buttons)
    assert buttons[0]["value"] == "app0:v1\thost-0000\thost-0001"


def test_a_version_1_database_gains_the_table_and_keeps_what_was_posted(db_url: str) -> None:
    """Migration step 2 on a database made before `outdated` existed; then the upsert, twice."""
    from sqlalchemy import delete, inspect

    from bot.jobs.outdated import last_posted, remember_posted
    from bot.state.schema import MIGRATIONS, migrate, schema_version
    from bot.state.store import make_engine
    from bot.state.tables import outdated_posts

    latest = MIGRATIONS[-1][0]
    engine = make_engine(db_url)
    assert migrate(engine) == latest
    outdated_posts.drop(engine)  # as a version-1 database has it: no table, version 1
    with engine.begin() as conn:
        conn.execute(delete(schema_version).where(schema_version.c.version >= 2))
    assert "outdated_posts" not in inspect(engine).get_table_names()
    assert migrate(engine) == latest
    assert "outdated_posts" in inspect(engine).get_table_names()
    entries = {"local|docker.io/library/x:1": {"state": "outdated", "local": "a", "remote": "b"}}
    remember_posted(engine, "s1", entries)
    remember_posted(engine, "s1", {})
    remember_posted(engine, "s2", entries)
    assert last_posted(engine, "s1") == {} and last_posted(engine, "s2") == entries
    engine.dispose()


def test_a_pull_button_pulls_on_each_host_it_names(
    settings: Settings, sandbox: Sandbox, engine: Any, docker_cli: Any, tmp_path: Any
) -> None:
    repo = stale_repo(sandbox, docker_cli)
    config = two_hosts(tmp_path, engine)
    for chat in chat_with(settings, config=config):
        out = chat(f"/docker outdated {repo} --host all")
        assert row_of(out, repo).split()[-1] == "one,two"
        action_id, value = chat.card()[0][f"pull {repo}:v1"]
        assert value == f"{repo}:v1\tone\ttwo"
        # A value naming a host that is gone (an old card, or a forged one) pulls where it can.
        card = ({"pull": (action_id, f"{repo}:v1\tghost\ttwo")}, None)
        pressed = chat.press_as("pull", "U111", card=card)
        assert (
            "Host `ghost` is no longer configured" in pressed
            or "Host ghost is no longer configured" in pressed
        )
        assert "Pulled in" in pressed and "on host two" in pressed
        assert repo_digests(docker_cli, f"{repo}:v1") == [f"{repo}@{registry_digest(sandbox, repo, 'v1')}"]


def test_registry_settings_are_checked_at_start() -> None:
    from pydantic import ValidationError

    from bot.core.settings import describe_error

    for bad in ({"hub_registry_url": "registry-1.docker.io"}, {"registry_concurrency": 0}):
        with pytest.raises(ValidationError) as caught:
            Settings(**bad)
        key = "DOCKERBOT_" + next(iter(bad)).upper()
        assert describe_error(caught.value).startswith(key)
    assert Settings().hub_registry_url == "https://registry-1.docker.io"
