"""/docker inspect and reference resolution against a real engine; `docker image inspect` is the oracle."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.core.services import Services
from bot.engine.images import AmbiguousImage, NoSuchImage, resolve_image
from bot.render.formatting import human_size
from tests.chat import ChatBot
from tests.conftest import OPENRESTY
from tests.test_images import build

# Every test here compares the bot with the docker CLI: once on each engine (tests/conftest.py).
pytestmark = pytest.mark.both_engines

Cli = Callable[..., Any]


def inspect_json(cli: Cli, ref: str) -> dict[str, Any]:
    [data] = json.loads(cli("image", "inspect", ref).stdout)
    return data


def all_ids(cli: Cli) -> list[str]:
    """Every image ID on the engine (hex, no sha256:), intermediate ones included."""
    return sorted({i.removeprefix("sha256:") for i in cli("images", "-a", "-q", "--no-trunc").stdout.split()})


def shortest_unique_prefix(image_id: str, ids: list[str]) -> str:
    hex_id = image_id.removeprefix("sha256:")
    for n in range(1, 65):
        if sum(1 for other in ids if other.startswith(hex_id[:n])) == 1:
            return hex_id[:n]
    raise AssertionError("unreachable")


def assert_card_matches_cli(out: str, data: dict[str, Any], created_since: set[str]) -> None:
    config = data["Config"] or {}
    assert f"Id: {data['Id']}" in out
    assert any(f"Created: {data['Created']} ({since})" in out for since in created_since), out
    assert f"Architecture/Os: {data['Architecture']}/{data['Os']}" in out
    assert f"Size: {human_size(data['Size'])}" in out
    assert f"Layers: {len(data['RootFS']['Layers'])}" in out
    assert f"Cmd: {json.dumps(config['Cmd'])}" in out
    for tag in data["RepoTags"]:
        assert f"\n{tag}\n" in out
    for digest in data["RepoDigests"]:
        assert f"\n{digest}\n" in out
    for entry in config.get("Env") or []:
        assert f"\n{entry}\n" in out


def since_of(cli: Cli, image_id: str) -> str:
    out = cli("images", "-a", "--no-trunc", "--format", "{{.ID}} {{.CreatedSince}}").stdout
    return next(line.split(" ", 1)[1] for line in out.splitlines() if line.startswith(image_id))


# --------------------------------------------------------------------------------------------- inspect


def test_inspect_by_id_prefixes_matches_the_cli(chat: ChatBot, docker_cli: Cli, pulled: None) -> None:
    for name in ("ubuntu", OPENRESTY):
        data = inspect_json(docker_cli, name)
        hex_id = data["Id"].removeprefix("sha256:")
        unique = shortest_unique_prefix(hex_id, all_ids(docker_cli))
        for ref in (hex_id[:12], hex_id[:8], unique, data["Id"], name):
            before = since_of(docker_cli, data["Id"])
            out = chat(f"/docker inspect {ref}")
            after = since_of(docker_cli, data["Id"])
            assert_card_matches_cli(out, data, {before, after})
            assert "Used by: no container (unused)" in out
    # A one-character prefix, when the engine holds an image whose first hex digit is unique.
    ids = all_ids(docker_cli)
    singles = [i for i in ids if sum(1 for j in ids if j[0] == i[0]) == 1]
    for hex_id in singles[:2]:
        data = inspect_json(docker_cli, hex_id)
        assert f"Id: {data['Id']}" in chat(f"/docker inspect {hex_id[0]}")


def test_unknown_and_invalid_refs_say_no_such_object_like_the_cli(
    chat: ChatBot, docker_cli: Cli, pulled: None
) -> None:
    for ref in ("z", "Bad::", "UPPER", "ubuntu:no-such-tag", "sha256:", "ffffffffffff"):
        if any(i.startswith(ref) for i in all_ids(docker_cli)):
            continue  # "ffffffffffff" could, in theory, be a real prefix
        cli = docker_cli("inspect", ref, check=False)
        assert cli.returncode != 0
        assert f"no such object: {ref}".lower() in cli.stderr.lower()  # CLI 29 lower-cases it
        assert chat(f"/docker inspect {ref}").strip() == f"Error: No such object: {ref}"
    assert chat("/docker inspect " + "a" * 300).strip() == "Error: No such object: " + "a" * 199 + "…"
    assert "Usage:" in chat("/docker inspect")


@pytest.fixture
def shared_prefix(docker_cli: Cli, pulled: None) -> Iterator[str]:
    """Two or more images whose IDs share a first hex digit: build tiny distinct images until so."""
    built: list[str] = []
    try:
        for i in range(40):
            ids = all_ids(docker_cli)
            firsts = [i[0] for i in ids]
            shared = next((c for c in sorted(set(firsts)) if firsts.count(c) > 1), None)
            if shared is not None:
                yield shared
                return
            built.append(build(docker_cli, f"dockerbot-test/prefix:{i}", f"FROM ubuntu\nLABEL n={i}\n"))
        raise AssertionError("no shared first digit after 40 images")
    finally:
        if built:
            docker_cli("rmi", "-f", *built, check=False)


def test_ambiguous_prefix_lists_the_candidates(chat: ChatBot, docker_cli: Cli, shared_prefix: str) -> None:
    candidates = [i for i in all_ids(docker_cli) if i.startswith(shared_prefix)]
    assert len(candidates) > 1
    # The engine itself only says "No such image" (graphdriver) or "ambiguous" (containerd).
    assert docker_cli("image", "inspect", shared_prefix, check=False).returncode != 0
    for ref in (shared_prefix, f"sha256:{shared_prefix}"):
        out = chat(f"/docker inspect {ref}")
        assert f"{ref} is ambiguous: it matches {len(candidates)} images" in out
        for hex_id in candidates:
            assert hex_id[:12] in out
            for tag in inspect_json(docker_cli, hex_id)["RepoTags"]:
                assert tag in out


def test_json_is_the_engines_json(chat: ChatBot, docker_cli: Cli, pulled: None, tmp_path: Path) -> None:
    data = inspect_json(docker_cli, "ubuntu")
    out = chat("/docker inspect ubuntu --json")
    name = f"inspect-{data['Id'].removeprefix('sha256:')[:12]}.json"
    if "attached" in out:  # too long for one message: a file
        assert name in out
        shown = json.loads((tmp_path / "files" / name).read_text())
    else:
        shown = json.loads(out)
    assert shown == [data]


def test_card_lists_the_containers_that_use_the_image(chat: ChatBot, docker_cli: Cli, pulled: None) -> None:
    docker_cli("create", "--name", "dockerbot-inspect-user", "ubuntu")
    try:
        out = chat("/docker inspect ubuntu")
        state = docker_cli(
            "inspect", "--format", "{{.State.Status}}", "dockerbot-inspect-user"
        ).stdout.strip()
        assert f"dockerbot-inspect-user ({state})" in out
        assert "Used by: 1 container (0 running)" in out
    finally:
        docker_cli("rm", "-f", "dockerbot-inspect-user")


@pytest.fixture
def secret_env_image(docker_cli: Cli, pulled: None) -> Iterator[str]:
    tag = "dockerbot-test/secret-env:1"
    build(docker_cli, tag, "FROM ubuntu\nENV DB_PASSWORD=hunter2 GREETING=hello\nEXPOSE 8080/tcp\n")
    yield tag
    docker_cli("rmi", "-f", tag, check=False)


def test_secret_looking_env_values_are_masked(
    chat: ChatBot, docker_cli: Cli, secret_env_image: str, tmp_path: Path
) -> None:
    assert "DB_PASSWORD=hunter2" in inspect_json(docker_cli, secret_env_image)["Config"]["Env"]
    card = chat(f"/docker inspect {secret_env_image}")
    assert "DB_PASSWORD=••••••" in card and "GREETING=hello" in card and "8080/tcp" in card
    raw = chat(f"/docker inspect {secret_env_image} --json")
    files = "".join(p.read_text() for p in (tmp_path / "files").glob("*.json")) if "attached" in raw else ""
    assert "hunter2" not in card + raw + files


# --------------------------------------------------------------------------------------------- resolution


def test_resolve_image_agrees_with_the_engine(services: Services, docker_cli: Cli, pulled: None) -> None:
    api = services.hosts.default.api
    data = inspect_json(docker_cli, "ubuntu")
    hex_id = data["Id"].removeprefix("sha256:")
    [digest] = [d.split("@")[1] for d in data["RepoDigests"] if d.startswith("ubuntu@")]
    refs = [
        "ubuntu",
        "ubuntu:latest",
        "library/ubuntu",
        "docker.io/library/ubuntu:latest",
        "index.docker.io/library/ubuntu",
        f"ubuntu@{digest}",
        f"docker.io/library/ubuntu:latest@{digest}",
        data["Id"],
        hex_id,
        hex_id[:12],
        f"sha256:{hex_id[:12]}",
        OPENRESTY,
        f"docker.io/{OPENRESTY}",
    ]
    for ref in refs:
        engine_id = docker_cli("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()
        assert resolve_image(api, ref)["Id"] == engine_id, ref
    for ref in ("ubuntu:nope", f"redis@{digest}", "openresty/openresty", "UBUNTU", ""):
        assert docker_cli("image", "inspect", ref, check=False).returncode != 0
        with pytest.raises(NoSuchImage, match="No such object"):
            resolve_image(api, ref)


def test_resolve_image_reports_ambiguity(services: Services, docker_cli: Cli, shared_prefix: str) -> None:
    api = services.hosts.default.api
    with pytest.raises(AmbiguousImage) as caught:
        resolve_image(api, shared_prefix)
    expected = {i for i in all_ids(docker_cli) if i.startswith(shared_prefix)}
    assert {c["Id"].removeprefix("sha256:") for c in caught.value.candidates} == expected


SECRETS = ("hunter2", "s3cretpw", "k3y-value", "authv4lue", "l4belpw", "t0kenlabel", "pwdv4lue")


@pytest.fixture
def credential_image(docker_cli: Cli, pulled: None) -> Iterator[str]:
    tag = "dockerbot-test/credentials:1"
    build(
        docker_cli,
        tag,
        "FROM ubuntu\n"
        'LABEL db.url="https://bob:l4belpw@example.com/x" deploy.token=t0kenlabel team=web\n'
        'CMD ["serve", "--db", "postgres://app:s3cretpw@db/app"]\n'
        "ENV DB_PASS=hunter2 DATABASE_URL=postgres://app:s3cretpw@db/app GREETING=hello\n"
        # The last instruction: ContainerConfig.Cmd repeats it as `#(nop) ENV …`.
        "ENV API_KEY=k3y-value MY_AUTH=authv4lue ROOT_PWD=pwdv4lue\n",
    )
    yield tag
    docker_cli("rmi", "-f", tag, check=False)


def test_credentials_are_masked_by_value_everywhere_the_image_repeats_them(
    chat: ChatBot, docker_cli: Cli, credential_image: str, tmp_path: Path
) -> None:
    engine_json = json.dumps(inspect_json(docker_cli, credential_image))
    # The classic store repeats the build's `#(nop) ENV` step in ContainerConfig; the containerd store
    # has no ContainerConfig (Engine 28 leaves it out), so there the secret is only in Env.
    classic = not docker_cli.__self__.containerd_store  # type: ignore[attr-defined]
    assert ("ENV API_KEY=k3y-value" in engine_json and "#(nop)" in engine_json) == classic
    assert all(secret in engine_json for secret in SECRETS), "the engine's JSON holds every one"
    card = chat(f"/docker inspect {credential_image}")
    raw = chat(f"/docker inspect {credential_image} --json")
    files = "".join(p.read_text() for p in (tmp_path / "files").glob("*.json")) if "attached" in raw else ""
    for shown_text, label in ((card, "team=web"), (raw + files, '"team": "web"')):
        leaked = [s for s in SECRETS if s in shown_text]
        assert leaked == [], f"shown: {leaked}"
        assert "GREETING=hello" in shown_text and label in shown_text
        assert "postgres://app:••••••@db/app" in shown_text and "DB_PASS=••••••" in shown_text
    shown_json = json.loads(files or raw)[0]
    if classic:
        assert shown_json["ContainerConfig"]["Cmd"][-1].startswith("ENV API_KEY=••••••")
    assert shown_json["Config"]["Labels"] == {
        "db.url": "https://bob:••••••@example.com/x",
        "deploy.token": "••••••",
        "team": "web",
    }
    assert shown_json["Id"] == inspect_json(docker_cli, credential_image)["Id"]
