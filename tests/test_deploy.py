"""Deploy artifacts (deploy/): the Slack manifest against Slack's schema, the image, compose, the
socket proxy in front of a real engine, the Helm chart and the systemd unit.

helm and docker compose, when this machine has neither, are fetched once (bot/sandbox/deploytools.py).
Tools that may be missing (haproxy, systemd-analyze) skip only their own check, with the reason;
everything else always runs.
"""

from __future__ import annotations

import ast
import copy
import http.client
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from bot.core.settings import Settings, env_key
from bot.sandbox import Engine, deploytools
from bot.slack.app import BOT_EVENTS, SLASH_COMMAND
from bot.slack.client import WEB_API_METHODS, DeclaredWebClient, UndeclaredSlackMethod
from tests.chat import ChatBot

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
MANIFEST = DEPLOY / "slack-app-manifest.yml"
SCHEMA = DEPLOY / "slack-manifest-schema" / "manifest.schema.1.0.0.json"
DOCKERFILE = DEPLOY / "Dockerfile"
HEALTHCHECK = DEPLOY / "healthcheck.py"
COMPOSE = DEPLOY / "docker-compose.yml"
COMPOSE_PROXY = DEPLOY / "docker-compose.socket-proxy.yml"
PROXY_CFG = DEPLOY / "socket-proxy" / "haproxy.cfg"
CHART = DEPLOY / "helm" / "dockerbot"
UNIT = DEPLOY / "systemd" / "dockerbot.service"

SOCKET = "/var/run/docker.sock"


def source_files() -> list[Path]:
    return sorted([*ROOT.glob("bot/**/*.py"), *ROOT.glob("handlers/*.py")])


def default(field: str) -> Any:
    return Settings.model_fields[field].default


# ------------------------------------------------------------------------------------ Slack manifest

# Every Web API method the bot calls, with the bot scope it needs (None: no scope).
# Asked for ahead of the code that uses them (App Home, user-group roles).
PLANNED = {"usergroups:read", "app_home_opened"}


def manifest() -> dict[str, Any]:
    return yaml.safe_load(MANIFEST.read_text())


def schema_validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


def schema_errors(doc: dict[str, Any]) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in schema_validator().iter_errors(doc)
    ]


def test_manifest_is_valid_under_slacks_schema() -> None:
    assert schema_errors(manifest()) == []


@pytest.mark.parametrize(
    ("path", "value", "complaint"),
    [
        (("features", "slash_commands", 0, "command"), "docker", "does not match"),
        (("display_information", "name"), "d" * 36, "is too long"),
        (("settings", "socket_mode"), True, "Additional properties"),
        (("oauth_config", "scopes", "bot"), "chat:write", "is not of type 'array'"),
    ],
)
def test_the_schema_refuses_what_slack_refuses(path: tuple[Any, ...], value: Any, complaint: str) -> None:
    doc = manifest()
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    errors = schema_errors(doc)
    assert any(complaint in e for e in errors), errors


def test_http_mode_edits_from_the_readme_stay_valid() -> None:
    doc = copy.deepcopy(manifest())
    url = "https://dockerbot.example.com/slack/events"
    doc["features"]["slash_commands"][0]["url"] = url
    doc["settings"]["interactivity"]["request_url"] = url
    doc["settings"]["event_subscriptions"]["request_url"] = url
    doc["settings"]["socket_mode_enabled"] = False
    assert schema_errors(doc) == []
    readme = (DEPLOY / "README.md").read_text()
    for key in ("url:", "request_url:", "socket_mode_enabled: false", "/slack/events"):
        assert key in readme, f"deploy/README.md must say how to set {key}"


def test_manifest_has_the_command_buttons_home_and_socket_mode() -> None:
    doc = manifest()
    [command] = doc["features"]["slash_commands"]
    assert command["command"] == "/docker"
    assert command["description"] and command["usage_hint"].startswith("help")
    assert doc["settings"]["interactivity"]["is_enabled"] is True
    assert doc["settings"]["socket_mode_enabled"] is True
    assert doc["features"]["app_home"]["home_tab_enabled"] is True
    assert "app_home_opened" in doc["settings"]["event_subscriptions"]["bot_events"]
    # Private replies' files go to the requester's DM: it must be visible, and read-only.
    assert doc["features"]["app_home"]["messages_tab_enabled"] is True
    assert doc["features"]["app_home"]["messages_tab_read_only_enabled"] is True


def test_scopes_are_exactly_what_the_code_calls() -> None:
    """The manifest against what the bot declares it calls (its client refuses anything else)."""
    needed = {scope for scope in WEB_API_METHODS.values() if scope} | {"commands"}  # a slash command
    asked = set(manifest()["oauth_config"]["scopes"]["bot"])
    assert needed <= asked, f"missing scopes: {needed - asked}"
    assert asked - needed <= PLANNED, f"scopes nothing calls: {asked - needed - PLANNED}"
    [command] = manifest()["features"]["slash_commands"]
    assert command["command"] == SLASH_COMMAND
    subscribed = set(manifest()["settings"]["event_subscriptions"]["bot_events"])
    assert set(BOT_EVENTS) <= subscribed and subscribed - set(BOT_EVENTS) <= PLANNED


def test_the_bots_client_refuses_an_undeclared_method() -> None:
    client = DeclaredWebClient(base_url="http://127.0.0.1:9/", token="xoxb-never-sent")
    with pytest.raises(UndeclaredSlackMethod, match=r"users\.list"):
        client.users_list()  # refused before any request is made (nothing listens on port 9)


def test_every_scope_says_why() -> None:
    lines = MANIFEST.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "bot:")
    entries = [line.strip() for line in lines[start + 1 :] if line.strip().startswith("- ")]
    entries = entries[: len(manifest()["oauth_config"]["scopes"]["bot"])]
    assert entries and all(re.fullmatch(r"- [a-z:.]+ # \S.{10,}", e) for e in entries), entries


# -------------------------------------------------------------------------------------- Dockerfile


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def instructions(name: str) -> list[str]:
    return [args for word, args in dockerfile() if word == name]


def dockerfile_env() -> dict[str, str]:
    return dict(item.split("=", 1) for args in instructions("ENV") for item in shlex.split(args))


def test_base_image_is_slim_and_pinned() -> None:
    [base] = instructions("FROM")
    exact = re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+-slim[\w.-]*(@sha256:[0-9a-f]{64})?", base)
    digest = re.fullmatch(r"[\w./-]+(:[\w.-]+)?@sha256:[0-9a-f]{64}", base)
    assert exact or digest, f"base image {base!r} is neither an exact slim version nor a digest"


def test_runs_as_a_numeric_non_root_user() -> None:
    user = instructions("USER")[-1]
    assert re.fullmatch(r"\d+(:\d+)?", user), "numeric, so runAsNonRoot can verify it"
    uid = int(user.split(":")[0])
    assert uid != 0
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == uid


def test_no_secrets_in_the_build() -> None:
    secretish = re.compile(r"TOKEN|SECRET|PASSW|KEY|AUTH|CREDENTIAL", re.I)
    for arg in instructions("ARG"):
        assert not secretish.search(arg.split("=")[0]), f"build argument {arg!r} looks like a secret"
    for name in dockerfile_env():
        assert not secretish.search(name) and not name.startswith("SLACK_"), name
    assert not re.search(r"xox[abpr]-|xapp-", DOCKERFILE.read_text())


def test_installs_only_the_runtime_requirements() -> None:
    installs = [args for args in instructions("RUN") if "pip install" in args]
    assert installs, "the runtime requirements must be installed"
    for args in installs:
        words = shlex.split(args.split("pip install", 1)[1].split("&&")[0])
        assert [w for w in words if not w.startswith("-")] == ["requirements.txt"], words
        assert "-r" in words
    copied = " ".join(instructions("COPY"))
    assert "requirements-dev" not in copied and "tests" not in copied
    assert not any(args.split()[0] in {".", "./"} for args in instructions("COPY")), "copy only the bot"


def test_the_build_context_is_what_the_image_copies() -> None:
    """BuildKit's Dockerfile-specific ignore file: everything out, the copied sources back in."""
    ignore = [
        line.strip()
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignore[0] == "*"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    sources = {src.rstrip("/") for args in instructions("COPY") for src in shlex.split(args)[:-1]}
    assert sources == allowed
    assert all((ROOT / src).exists() for src in sources)
    assert {"bot/sandbox", "bot/runtime/launch.py"} <= set(ignore), "the sandbox is not for production"


def test_every_third_party_import_is_a_runtime_requirement() -> None:
    """The image installs requirements.txt only: anything else the bot imports would crash it."""
    imported: set[str] = set()
    for path in [*source_files(), HEALTHCHECK]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {m for m in imported if m not in sys.stdlib_module_names and m not in {"bot", "handlers"}}

    required = {
        canonical(re.split(r"[\[=<>!~ ;]", line.strip(), maxsplit=1)[0])
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "-"))
    }
    installed = with_dependencies(required)
    dists = importlib.metadata.packages_distributions()
    missing = {m for m in third_party if not {canonical(d) for d in dists.get(m, [])} & installed}
    assert not missing, f"imported but not installed by requirements.txt: {sorted(missing)}"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def with_dependencies(names: set[str]) -> set[str]:
    """The distributions pip installs for `names`: them and what they require (extras aside)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        todo += [
            canonical(re.split(r"[\[=<>!~ ;(]", r, maxsplit=1)[0]) for r in requires if "extra ==" not in r
        ]
    return seen


def test_healthcheck_and_ports_match_the_bots_defaults() -> None:
    [check] = instructions("HEALTHCHECK")
    assert "/app/healthcheck.py" in check and "--interval" in check
    env = dockerfile_env()
    assert env["DOCKERBOT_PORT"] == str(default("port"))
    assert env["DOCKERBOT_HEALTH_PORT"] == str(default("health_port"))
    assert env["DOCKERBOT_DATA_DIR"] == "/data"
    assert instructions("ENTRYPOINT") == ['["python", "-m", "bot"]']
    assert instructions("CMD") == ['["serve"]']


@dataclass
class HealthServer:
    port: int


@pytest.fixture
def health_server() -> Iterator[HealthServer]:
    from bot.slack.http import HttpServer, health_app

    server = HttpServer(health_app(lambda: {"engine": True}), "127.0.0.1", 0).start()
    try:
        yield HealthServer(server.port)
    finally:
        server.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_healthcheck(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK)], env=env, capture_output=True, text=True, timeout=30
    )


def test_the_http_server_listens_on_ipv6_too() -> None:
    """`serve --host` may be an IPv6 address (`::` for all of them), as it could be with waitress."""
    from bot.slack.http import HttpServer, health_app

    server = HttpServer(health_app(lambda: {"engine": True}), "::1", 0).start()
    try:
        conn = http.client.HTTPConnection("::1", server.port, timeout=10)
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        assert (response.status, json.loads(response.read())) == (200, {"status": "ok"})
        conn.close()
    finally:
        server.close()


def test_healthcheck_asks_the_health_port_in_both_modes(health_server: HealthServer) -> None:
    live, dead = str(health_server.port), str(free_port())
    socket_mode = {"SLACK_APP_TOKEN": "xapp-1-test", "DOCKERBOT_HEALTH_PORT": live, "DOCKERBOT_PORT": dead}
    assert run_healthcheck(socket_mode).returncode == 0
    http_mode = {"SLACK_APP_TOKEN": "", "DOCKERBOT_HEALTH_PORT": live, "DOCKERBOT_PORT": dead}
    assert run_healthcheck(http_mode).returncode == 0
    failed = run_healthcheck({"SLACK_APP_TOKEN": "xapp-1-test", "DOCKERBOT_HEALTH_PORT": dead})
    assert failed.returncode == 1
    assert f"127.0.0.1:{dead}/healthz" in failed.stderr and "xapp" not in failed.stderr


# ----------------------------------------------------------------------------------------- compose


def compose(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def mounts(service: dict[str, Any]) -> list[str]:
    return [v if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in service.get("volumes", [])]


def test_compose_runs_the_bot_on_the_engine_socket() -> None:
    bot = compose(COMPOSE)["services"]["dockerbot"]
    assert f"{SOCKET}:{SOCKET}" in mounts(bot)
    assert bot["environment"]["DOCKER_HOST"] == f"unix://{SOCKET}"
    data_dir = bot["environment"]["DOCKERBOT_DATA_DIR"]
    assert any(m.endswith(f":{data_dir}") for m in mounts(bot))
    assert bot["build"]["dockerfile"] == "deploy/Dockerfile" and not bot.get("privileged")


def test_least_privilege_compose_keeps_the_socket_behind_the_proxy() -> None:
    doc = compose(COMPOSE_PROXY)
    services = doc["services"]
    assert not any(s.get("privileged") for s in services.values())
    bot, proxy = services["dockerbot"], services["socket-proxy"]
    assert not any("docker.sock" in m for m in mounts(bot)), "the bot must not see the socket"
    assert bot["environment"]["DOCKER_HOST"] == "tcp://socket-proxy:2375"
    assert f"{SOCKET}:{SOCKET}:ro" in mounts(proxy)
    assert "./socket-proxy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in mounts(proxy)
    assert "ports" not in proxy, "nothing outside the internal network may reach the proxy"
    assert all(doc["networks"][n].get("internal") for n in proxy["networks"])
    assert re.fullmatch(r"haproxy:\d+\.\d+\.\d+-alpine", proxy["image"])
    for service in services.values():
        assert service["cap_drop"] == ["ALL"] and "no-new-privileges:true" in service["security_opt"]


@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_PROXY], ids=["socket", "socket-proxy"])
def test_compose_files_render(path: Path, tmp_path: Path) -> None:
    command = deploytools.compose()  # the machine's, else Debian's, fetched once
    copy_dir = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy_dir)
    (copy_dir / "dockerbot.env").write_text("SLACK_BOT_TOKEN=xoxb-test\n")
    args = [*command, "-f", str(copy_dir / path.name), "config"]
    base = {k: v for k, v in os.environ.items() if k != "DOCKER_GID"}
    rendered = subprocess.run(args, env={**base, "DOCKER_GID": "998"}, capture_output=True, text=True)
    assert rendered.returncode == 0, rendered.stderr
    services = yaml.safe_load(rendered.stdout)["services"]
    socket_user = services["dockerbot" if path == COMPOSE else "socket-proxy"]
    assert "998" in [str(g) for g in socket_user["group_add"]]
    unset = subprocess.run(args, env=base, capture_output=True, text=True)
    assert unset.returncode != 0 and "stat -c %g" in unset.stderr, (
        "a missing DOCKER_GID must say how to find it"
    )


# -------------------------------------------------------------------- socket proxy on a real engine


@dataclass
class Proxy:
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def requests(self) -> list[tuple[int, str, str]]:
        """(status, method, path) of every request the proxy logged."""
        found = re.findall(r"^\S+ (\d{3}) ([A-Z]+) (\S+)", self.log.read_text(), re.M)
        return [(int(status), method, path) for status, method, path in found]

    def wait_for(self, method: str, path: str, timeout: float = 15) -> None:
        """Wait for a request's log line (written when its answer starts)."""
        deadline = time.monotonic() + timeout
        while not any(m == method and p.split("?")[0].endswith(path) for _, m, p in self.requests()):
            assert time.monotonic() < deadline, f"{method} {path} not in the proxy's log"
            time.sleep(0.1)

    def raw(self, method: str, path: str) -> int:
        """One request exactly as written (no client-side path normalisation)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=b"" if method != "GET" else None)
            return conn.getresponse().status
        finally:
            conn.close()


def haproxy() -> str:
    path = shutil.which("haproxy")
    if path is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy): the socket proxy is not exercised")
    return path


def test_proxy_config_is_valid() -> None:
    checked = subprocess.run([haproxy(), "-c", "-f", str(PROXY_CFG)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.fixture
def proxy(engine: Engine, tmp_path: Path) -> Iterator[Proxy]:
    binary = haproxy()
    port = free_port()
    text = PROXY_CFG.read_text()
    assert text.count("bind :2375") == 1 and text.count(f"server engine {SOCKET}") == 2
    socket_path = engine.docker_host.removeprefix("unix://")
    text = text.replace("bind :2375", f"bind 127.0.0.1:{port}")
    text = text.replace(f"server engine {SOCKET}", f"server engine {socket_path}")
    config = tmp_path / "haproxy.cfg"
    config.write_text(text)
    log = tmp_path / "haproxy.log"
    with log.open("w") as out:
        process = subprocess.Popen([binary, "-db", "-f", str(config)], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield Proxy(port, log)
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_the_bot_works_through_the_proxy(
    proxy: Proxy, chat: ChatBot, clean_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every engine call of the bot's commands, its readiness check, the last-use ledger and the
    build-cache prune go through; the proxy refuses none of them."""
    from bot.engine.ledger import Ledger
    from bot.jobs.cleanup_plan import plan_cleanup
    from bot.jobs.cleanup_run import execute_cleanup
    from bot.jobs.policy import parse_policy
    from bot.slack.http import Readiness

    monkeypatch.setenv("DOCKER_HOST", proxy.url)
    services = chat.shell.router.services
    host = services.hosts.default
    ledger = Ledger(services.store.engine)
    ledger.start_watching([host])
    try:
        assert "Downloaded newer image for alpine:latest" in chat("pull alpine")
        image_id = clean_engine.cli("image", "inspect", "--format", "{{.Id}}", "alpine").stdout.strip()
        assert "alpine" in chat("images")
        assert image_id in chat("inspect alpine")
        assert "Images" in chat("report")
        assert "Error" not in chat("cleanup preview")
        deadline = time.monotonic() + 20
        while ledger.last_used("local", image_id) is None:  # the pull, seen on the events stream
            assert time.monotonic() < deadline, "the ledger saw no event through the proxy"
            time.sleep(0.1)
    finally:
        ledger.stop()
    assert Readiness(host)()["engine"] is True
    assert "1 up" in chat("hosts")  # the engine's facts: GET /info
    policy = parse_policy("dangling, build-cache")
    plan = plan_cleanup(host.api, policy, host_name="local", ledger=None, now=time.time())
    assert execute_cleanup(host.api, plan, prune_build_cache=True).errors == []
    chat("rmi alpine")
    assert f"Deleted: {image_id}" in chat("Confirm")
    assert clean_engine.cli("image", "inspect", "alpine", check=False).returncode != 0

    proxy.wait_for("GET", "/events")
    seen = proxy.requests()
    assert [r for r in seen if r[0] == 403] == [], "the proxy refused a call the bot makes"
    kinds = {(method, re.sub(r"^/v[0-9.]+", "", path).split("?")[0]) for _, method, path in seen}
    for expected in [
        ("POST", "/images/create"),
        ("GET", "/images/json"),
        ("GET", "/containers/json"),
        ("GET", "/system/df"),
        ("GET", "/events"),
        ("GET", "/_ping"),
        ("GET", "/info"),
        ("POST", "/build/prune"),
    ]:
        assert expected in kinds, f"{expected} did not go through the proxy: {sorted(kinds)}"
    assert any(method == "DELETE" for method, _ in kinds)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1.45/containers/create"),
        ("POST", "/containers/create?name=x"),
        ("POST", "/v1.45/containers/abc/start"),
        ("POST", "/containers/abc/exec"),
        ("POST", "/exec/abc/start"),
        ("GET", "/containers/abc/json"),  # a container's environment: its secrets
        ("GET", "/containers/abc/archive?path=/"),
        ("DELETE", "/containers/abc"),
        ("POST", "/containers/prune"),
        ("GET", "/volumes"),
        ("POST", "/volumes/create"),
        ("GET", "/networks"),
        ("POST", "/build"),
        ("POST", "/images/load"),
        ("POST", "/images/abc/push"),
        ("POST", "/images/abc/tag?repo=x"),
        ("GET", "/images/abc/get"),
        ("POST", "/images/prune"),
        ("POST", "/images/create?fromSrc=http://example.com/rootfs.tar"),
        ("POST", "/auth"),
        ("POST", "/swarm/init"),
        ("POST", "/plugins/pull"),
        ("GET", "/images/..%2Fcontainers%2Fabc/json"),
        ("DELETE", "/images/x/../../containers/abc"),
    ],
)
def test_the_proxy_refuses_everything_else(proxy: Proxy, method: str, path: str) -> None:
    assert proxy.raw(method, path) == 403


def test_the_proxy_passes_names_that_look_odd_but_are_not(proxy: Proxy) -> None:
    # The engine answers (404: no such image), not the proxy's 403.
    assert proxy.raw("GET", "/images/ab/json") == 404
    assert proxy.raw("GET", "/v1.45/images/registry.example.com:5000/a/b:1.0/json") != 403


# `docker import` dressed as a pull. The engine (moby's postImagesCreate) pulls when r.Form's first
# `fromImage` is not empty and imports otherwise: from the `fromSrc` URL, or (`fromSrc=-`) from a tar
# in the body, re-pointing `repo:tag`. r.Form is Go's: names and values percent-decoded, a urlencoded
# body (chunked or not) merged in *ahead of* the query. Each attempt: (what the README lists, query,
# body, content type, chunked, whether the engine really imports it when asked directly).
@dataclass(frozen=True)
class Attempt:
    what: str
    query: str
    body: bytes | str = b""
    form: bool = False
    chunked: bool = False
    imports: bool = False


IMPORT_ATTEMPTS: dict[str, Attempt] = {
    "fromsrc": Attempt("a `fromSrc` URL", "fromSrc={url}&repo=evil&tag=fromsrc", imports=True),
    "encoded": Attempt(
        "a percent-encoded parameter name (`from%53rc`)",
        "from%53rc={url}&repo=evil&tag=encoded",
        imports=True,
    ),
    "form": Attempt(
        "a urlencoded form body, even under a pull's query",
        "fromImage=busybox&tag=latest",
        body="fromImage=&fromSrc={url}&repo=evil&tag=form",
        form=True,
        imports=True,
    ),
    "chunkedform": Attempt(
        "a chunked body",
        "fromImage=busybox&tag=latest",
        body="fromImage=&fromSrc={url}&repo=evil&tag=chunkedform",
        form=True,
        chunked=True,
        imports=True,
    ),
    "tar": Attempt("a tar body (`fromSrc=-`)", "fromSrc=-&repo=evil&tag=tar", body=b"<tar>", imports=True),
    "repeated": Attempt("a repeated parameter", "fromImage=&fromImage=busybox&tag=latest"),
    "none": Attempt("no `fromImage`", "tag=latest"),
    "empty": Attempt("an empty `fromImage`", "fromImage=&tag=latest"),
    "noquery": Attempt("no query at all", ""),
    "other": Attempt("any parameter but `fromImage`, `tag`, `platform`", "fromImage=busybox&message=x"),
    "case": Attempt("a parameter name in another case", "fromImage=busybox&FromSrc={url}"),
    "semicolon": Attempt("a `;` separator", "fromImage=busybox;fromSrc={url}"),
}
README_REFUSES_START = "<!-- proxy refuses on /images/create: checked against tests/test_deploy.py -->"


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=60)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(self.unix_path)


@dataclass
class RootfsServer:
    """An HTTP server with one tiny rootfs tar: what `fromSrc=URL` makes the engine fetch."""

    url: str
    tar: bytes
    hits: list[str]


@pytest.fixture
def rootfs_server() -> Iterator[RootfsServer]:
    import http.server
    import io
    import tarfile
    import threading

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("pwned")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"hi\n"))
    data = buffer.getvalue()
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield RootfsServer(f"http://127.0.0.1:{server.server_address[1]}/rootfs.tar", data, hits)
    finally:
        server.shutdown()
        server.server_close()


def attempt_import(conn: http.client.HTTPConnection, attempt: Attempt, rootfs: RootfsServer) -> int:
    query = attempt.query.replace("{url}", rootfs.url)
    path = "/images/create" + (f"?{query}" if query else "")
    body = (
        attempt.body
        if isinstance(attempt.body, bytes)
        else attempt.body.replace("{url}", rootfs.url).encode()
    )
    body = rootfs.tar if body == b"<tar>" else body
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if attempt.form else {}
    try:
        try:
            if attempt.chunked:
                headers["Transfer-Encoding"] = "chunked"
                chunks = iter([body[:7], body[7:]])
                conn.request("POST", path, body=chunks, headers=headers, encode_chunked=True)
            else:
                conn.request("POST", path, body=body, headers=headers)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the proxy answered (403) and closed before the whole body went out
        response = conn.getresponse()
        response.read()  # the engine streams its progress; the import is done when the stream ends
        return response.status
    finally:
        conn.close()


def evil_tags(engine: Engine) -> list[str]:
    return engine.cli("images", "evil", "--format", "{{.Tag}}").stdout.split()


@pytest.mark.parametrize("case", list(IMPORT_ATTEMPTS))
def test_the_proxy_refuses_every_import_dressed_as_a_pull(
    case: str, proxy: Proxy, engine: Engine, rootfs_server: RootfsServer
) -> None:
    attempt = IMPORT_ATTEMPTS[case]
    engine.cli("rmi", "-f", f"evil:{case}", check=False)
    assert (
        attempt_import(
            http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=60), attempt, rootfs_server
        )
        == 403
    )
    assert rootfs_server.hits == [] and case not in evil_tags(engine), "the engine imported through the proxy"
    if attempt.imports:  # the attempt is real: straight to the engine, it imports
        try:
            attempt_import(UnixConnection(engine.docker_host.removeprefix("unix://")), attempt, rootfs_server)
            assert case in evil_tags(engine), f"{case}: the engine did not import it directly either"
        finally:
            engine.cli("rmi", "-f", f"evil:{case}", check=False)


def test_the_proxy_passes_the_pulls_the_sdk_sends(proxy: Proxy) -> None:
    """What the docker SDK sends for `pull` reaches the engine (it answers, not the proxy's 403)."""
    for query in [
        "tag=latest&fromImage=nosuch.invalid%2Fx",
        "fromImage=nosuch.invalid%2Fx&tag=1&platform=linux%2Famd64",
    ]:
        assert proxy.raw("POST", f"/v1.41/images/create?{query}") not in (403, 400)


def test_the_readme_lists_what_the_proxy_refuses_on_pull() -> None:
    text = (DEPLOY / "README.md").read_text()
    assert README_REFUSES_START in text
    block = text.split(README_REFUSES_START, 1)[1].strip().split("\n\n", 1)[0]
    listed = [line.removeprefix("- ").rstrip(";.") for line in block.splitlines()]
    assert listed == [a.what for a in IMPORT_ATTEMPTS.values()]


def test_the_docker_cli_cannot_start_a_privileged_container_through_it(proxy: Proxy) -> None:
    run = subprocess.run(
        ["docker", "--host", proxy.url, "run", "--rm", "--privileged", "-v", "/:/host", "busybox", "true"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent"},
    )
    assert run.returncode != 0 and "403" in run.stderr


# -------------------------------------------------------------------------------------------- Helm

VALUES_REF = re.compile(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
BLOCK_OPEN = re.compile(r"\{\{-?\s*(if|range|with|define)\b")
BLOCK_END = re.compile(r"\{\{-?\s*end\s*-?\}\}")


def chart_values() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def templates() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((CHART / "templates").iterdir())}


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "dockerbot" and chart["type"] == "application"
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"]) and chart["appVersion"]


def test_templates_use_only_values_that_exist_and_close_their_blocks() -> None:
    values = chart_values()
    defined = set(re.findall(r'define "([^"]+)"', templates()["_helpers.tpl"]))
    for name, text in templates().items():
        for ref in VALUES_REF.findall(text):
            node: Any = values
            for key in ref.strip(".").split("."):
                assert isinstance(node, dict) and key in node, f"{name}: .Values{ref} is not in values.yaml"
                node = node[key]
        assert len(BLOCK_OPEN.findall(text)) == len(BLOCK_END.findall(text)), f"{name}: unbalanced blocks"
        assert text.count("{{") == text.count("}}"), name
        for used in re.findall(r'include "([^"]+)"', text):
            assert used in defined, f"{name}: include of undefined {used!r}"


def test_one_replica_recreated_with_probes_on_the_health_port() -> None:
    deployment = templates()["deployment.yaml"]
    assert chart_values()["replicaCount"] == 1, "one replica (SQLite) unless asked"
    assert re.search(r"^  replicas: \{\{ \.Values\.replicaCount \}\}$", deployment, re.M)
    assert re.search(r"\{\{- else \}\}\n.*\n\s+type: Recreate", deployment), "one replica: Recreate"
    assert "path: /healthz" in deployment and "path: /readyz" in deployment
    assert deployment.count("port: health\n") == 2, "probes never on the public port"
    helper = templates()["_helpers.tpl"]
    assert re.search(r'eq \.Values\.mode "http" -\}\}http\{\{- else -\}\}health', helper)
    assert 'include "dockerbot.servicePort"' in templates()["service.yaml"]
    assert "- name: http\n" in deployment and "- name: health\n" in deployment
    values = chart_values()
    assert values["ports"] == {"http": default("port"), "health": default("health_port")}
    assert values["podSecurityContext"]["runAsNonRoot"] is True
    assert values["securityContext"]["readOnlyRootFilesystem"] is True
    assert "mountPath: /tmp" in deployment, "matplotlib and tempfile need a writable /tmp"
    assert "type: Socket" in deployment and values["docker"]["hostSocket"]["enabled"] is False
    assert "DOCKER_TLS_VERIFY" in deployment and "DOCKER_CERT_PATH" in deployment


def test_more_than_one_replica_needs_postgresql_rolls_and_has_a_disruption_budget() -> None:
    helper = templates()["_helpers.tpl"]
    refusal = re.search(
        r"if and \(gt \(int \.Values\.replicaCount\) 1\) "
        r'\(not \(include "dockerbot\.postgresql" \.\)\) -\}\}\n'
        r'\{\{- fail "replicaCount > 1 needs PostgreSQL',
        helper,
    )
    assert refusal, "the chart refuses several replicas on SQLite"
    assert 'hasPrefix "postgresql" .Values.secretEnv.databaseUrl' in helper
    assert ".Values.database.postgresqlInSecret" in helper
    deployment = templates()["deployment.yaml"]
    rolling = re.search(
        r"if gt \(int \.Values\.replicaCount\) 1 \}\}\n(?:\s+#.*\n)*\s+type: RollingUpdate\n"
        r"\s+rollingUpdate:\n\s+maxSurge: 1\n\s+maxUnavailable: 0\n",
        deployment,
    )
    assert rolling, "several replicas: rolled one at a time, never fewer than asked"
    assert "name: DOCKERBOT_LEASE_SECONDS" in deployment and "fieldPath: metadata.name" in deployment
    assert "persistence.enabled (eq (int .Values.replicaCount) 1)" in deployment, "no shared RWO volume"
    assert "(eq (int .Values.replicaCount) 1)" in templates()["pvc.yaml"]
    pdb = templates()["pdb.yaml"]
    assert pdb.startswith("{{- if gt (int .Values.replicaCount) 1 }}") and "kind: PodDisruptionBudget" in pdb
    assert (
        'include "dockerbot.selectorLabels"' in pdb
        and "maxUnavailable: {{ .Values.podDisruptionBudget" in pdb
    )
    assert chart_values()["database"]["leaseSeconds"] == default("lease_seconds")


def helm_template(tmp_path: Path, *sets: str) -> subprocess.CompletedProcess[str]:
    args = [deploytools.helm(), "template", "rel", str(CHART)]  # the machine's, else fetched once
    for item in sets:
        args += ["--set", item]
    return subprocess.run(
        args, capture_output=True, text=True, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    )


def rendered_deployment(out: str) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(out) if d]
    return next(d for d in docs if d["kind"] == "Deployment")


def test_helm_renders_socket_mode_with_tls(tmp_path: Path) -> None:
    done = helm_template(
        tmp_path,
        "slack.botToken=xoxb-1,slack.appToken=xapp-1,docker.host=tcp://d:2376",
        "docker.tls.ca=C,docker.tls.cert=X,docker.tls.key=K",
    )
    assert done.returncode == 0, done.stderr
    spec = rendered_deployment(done.stdout)["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
    container = spec["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["DOCKER_TLS_VERIFY"] == "1" and env["DOCKER_CERT_PATH"] == "/etc/docker-tls"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["ports"] == [{"name": "health", "containerPort": default("health_port")}]


def test_helm_renders_http_mode_on_the_host_socket(tmp_path: Path) -> None:
    done = helm_template(
        tmp_path, "mode=http,slack.botToken=xoxb-1,slack.signingSecret=s,docker.hostSocket.enabled=true"
    )
    assert done.returncode == 0, done.stderr
    pod = rendered_deployment(done.stdout)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {p["name"] for p in container["ports"]} == {"http", "health"}
    assert {"path": SOCKET, "type": "Socket"} in [v["hostPath"] for v in pod["volumes"] if "hostPath" in v]
    refused = helm_template(tmp_path, "slack.botToken=xoxb-1,slack.appToken=xapp-1")
    assert refused.returncode != 0 and "docker.host" in refused.stderr


REPLICAS = (
    "mode=http,slack.botToken=xoxb-1,slack.signingSecret=s,docker.host=tcp://engine:2376,replicaCount=2"
)
TLS = "docker.tls.ca=c,docker.tls.cert=c,docker.tls.key=k"


def test_helm_runs_two_replicas_only_on_postgresql_and_one_engine(tmp_path: Path) -> None:
    on_sqlite = helm_template(tmp_path, REPLICAS, TLS)
    assert on_sqlite.returncode != 0 and "replicaCount > 1 needs PostgreSQL" in on_sqlite.stderr
    pg = "secretEnv.databaseUrl=postgresql+psycopg://bot@db/bot"
    node_sockets = helm_template(
        tmp_path, REPLICAS.replace("docker.host=tcp://engine:2376", "docker.hostSocket.enabled=true"), pg
    )
    assert node_sockets.returncode != 0 and "replicaCount > 1 needs docker.host" in node_sockets.stderr

    done = helm_template(tmp_path, REPLICAS, TLS, pg)
    assert done.returncode == 0, done.stderr
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    kinds = [d["kind"] for d in docs]
    assert "PodDisruptionBudget" in kinds and "PersistentVolumeClaim" not in kinds
    deployment = rendered_deployment(done.stdout)["spec"]
    assert deployment["replicas"] == 2
    assert deployment["strategy"]["type"] == "RollingUpdate"
    assert deployment["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    env = {e["name"]: e for e in deployment["template"]["spec"]["containers"][0]["env"]}
    assert env["DOCKERBOT_REPLICA"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"

    single = helm_template(tmp_path, REPLICAS.replace("replicaCount=2", "replicaCount=1"), TLS)
    assert single.returncode == 0, single.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(single.stdout) if d]
    assert "PodDisruptionBudget" not in kinds and "PersistentVolumeClaim" in kinds
    assert rendered_deployment(single.stdout)["spec"]["strategy"]["type"] == "Recreate"


# ----------------------------------------------------------------------------------------- systemd


def unit() -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = []
        else:
            key, _, value = line.partition("=")
            sections[current].append((key.strip(), value.strip()))
    return sections


def test_systemd_unit_is_hardened_and_keeps_the_socket_usable() -> None:
    service = unit()["Service"]
    get = dict(service)  # last one wins, as in systemd for single-valued keys
    assert get["User"] not in {"root", "0"} and "docker" in get["SupplementaryGroups"].split()
    assert get["EnvironmentFile"] and get["Restart"] == "on-failure"
    assert get["ExecStart"].endswith("-m bot serve")
    env = dict(v.split("=", 1) for k, v in service if k == "Environment")
    data_dir = env["DOCKERBOT_DATA_DIR"]
    assert data_dir in get["ReadWritePaths"].split()
    assert env["DOCKERBOT_HEALTH_HOST"] == "127.0.0.1", "readiness and metrics stay off the network"
    assert get["NoNewPrivileges"] == "yes" and get["ProtectSystem"] == "strict"
    assert get["PrivateTmp"] == "yes" and get["ProtectHome"] == "yes"
    assert "AF_UNIX" in get["RestrictAddressFamilies"].split(), "the docker socket is AF_UNIX"
    for breaks in ("PrivateNetwork", "PrivateUsers"):  # no Slack; the docker group remapped away
        assert get.get(breaks, "no") == "no", breaks
    # The worker process lowers its own priority (bot.runtime.worker): setpriority is in @resources, which
    # is denied, so it must be allowed again after that line (later lines edit the set in order).
    filters = [value for key, value in service if key == "SystemCallFilter"]
    denied_at = next(i for i, f in enumerate(filters) if f.startswith("~") and "@resources" in f)
    assert "setpriority" in filters[denied_at + 1 :]
    assert get["SystemCallErrorNumber"] == "EPERM", "a filtered call fails, it does not kill the bot"


def test_systemd_accepts_every_line_of_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: the unit is not verified by systemd")
    text = re.sub(r"^ExecStart=\S+", f"ExecStart={sys.executable}", UNIT.read_text(), flags=re.M)
    copy_path = tmp_path / "dockerbot.service"
    copy_path.write_text(text)
    done = subprocess.run([analyze, "verify", str(copy_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and (done.stdout + done.stderr).strip() == "", done.stdout + done.stderr


# ------------------------------------------------------------------------------------------- all


def test_every_setting_named_in_deploy_is_one_the_bot_reads() -> None:
    known = {env_key(name) for name in Settings.model_fields}
    texts = [
        p.read_text()
        for p in DEPLOY.rglob("*")
        if p.is_file() and "slack-manifest-schema" not in p.parts and p.suffix != ".json"
    ]
    named = {m for text in texts for m in re.findall(r"\b(?:DOCKERBOT|SLACK)_[A-Z][A-Z_]*[A-Z]\b", text)}
    assert named, "deploy files name settings"
    assert not named - known, f"not settings of the bot: {sorted(named - known)}"
