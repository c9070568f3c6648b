"""The reference grammar against the docker CLI's own parser (the CLI parses before dialling the engine)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from bot.engine.reference import InvalidReference, looks_like_id, parse_reference

CASES_VALID = [
    ("ubuntu", "docker.io/library/ubuntu", None, "ubuntu"),
    ("ubuntu:22.04", "docker.io/library/ubuntu", "22.04", "ubuntu:22.04"),
    ("openresty/openresty:1.13.6.2-alpine", "docker.io/openresty/openresty", "1.13.6.2-alpine", None),
    ("docker.io/library/redis:7", "docker.io/library/redis", "7", "redis:7"),
    ("index.docker.io/library/redis", "docker.io/library/redis", None, "redis"),
    ("127.0.0.1:5000/team/app:v1", "127.0.0.1:5000/team/app", "v1", "127.0.0.1:5000/team/app:v1"),
    ("localhost/app", "localhost/app", None, "localhost/app"),
    ("Foo/bar", "Foo/bar", None, "Foo/bar"),  # an upper-case first component is a registry host
    ("a__b/c-d", "docker.io/a__b/c-d", None, "a__b/c-d"),
]

CASES_INVALID = [
    ("UPPER", "invalid reference format: repository name (library/UPPER) must be lowercase"),
    ("a b", "invalid reference format"),
    ("ubuntu:tag:extra", "invalid reference format"),
    ("ubuntu@sha256:abc", "invalid reference format"),
    ("ubuntu:", "invalid reference format"),
    ("a//b", "invalid reference format"),
    ("", "invalid reference format"),
    ("a" * 64, f"invalid repository name ({'a' * 64}), cannot specify 64-byte hexadecimal strings"),
    ("; rm -rf /", "invalid reference format"),
    ("$(id)", "invalid reference format"),
    ("../etc/passwd", "invalid reference format"),
]


@pytest.mark.parametrize(("text", "name", "tag", "shown"), CASES_VALID)
def test_valid_references_normalize_like_the_cli(
    text: str, name: str, tag: str | None, shown: str | None
) -> None:
    ref = parse_reference(text)
    assert ref.name == name
    assert ref.tag == tag
    if shown:
        assert ref.familiar() == shown


@pytest.mark.parametrize(("text", "error"), CASES_INVALID)
def test_invalid_references_get_the_cli_error_text(text: str, error: str) -> None:
    with pytest.raises(InvalidReference) as caught:
        parse_reference(text)
    assert str(caught.value) == error


@pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker CLI as the oracle")
@pytest.mark.parametrize("text", [c[0] for c in CASES_INVALID if c[0] and not c[0].startswith("-")])
def test_the_cli_agrees_on_invalid_references(text: str) -> None:
    # The CLI rejects a bad reference before it dials the engine, so no engine is needed.
    result = subprocess.run(
        ["docker", "pull", text],
        capture_output=True,
        text=True,
        env={"DOCKER_HOST": "unix:///nonexistent/dockerbot.sock", "PATH": "/usr/local/bin:/usr/bin:/bin"},
        timeout=30,
    )
    assert result.returncode != 0
    with pytest.raises(InvalidReference) as caught:
        parse_reference(text)
    assert str(caught.value) in result.stderr


def test_default_tag_and_digest() -> None:
    assert parse_reference("ubuntu").with_default_tag().familiar() == "ubuntu:latest"
    digest = "sha256:" + "ab" * 32
    ref = parse_reference(f"ubuntu@{digest}").with_default_tag()
    assert ref.tag is None and ref.digest == digest
    assert ref.canonical() == f"docker.io/library/ubuntu@{digest}"


def test_id_like() -> None:
    assert looks_like_id("3")
    assert looks_like_id("sha256:" + "a" * 64)
    assert not looks_like_id("ubuntu")
    assert not looks_like_id("")
