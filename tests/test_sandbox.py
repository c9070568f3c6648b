"""The sandbox against a real dockerd and registry (no mocks): seeding, pulls as a user types them,
Hub-like errors, containers, restart, a TLS engine, readable start failures and a clean teardown."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

import bot.sandbox.seeding as seeding_mod
from bot.sandbox import SEED_IMAGES, CliError, Engine, Sandbox, TlsFiles, make_tls, split_ref

pytestmark = [pytest.mark.engine, pytest.mark.skipif(os.geteuid() != 0, reason="dockerd needs root")]

DENIED = (
    "Error response from daemon: pull access denied for nosuchimage, repository does not exist or may "
    "require 'docker login': denied: requested access to the resource is denied"
)

NO_TAG = "manifest for ubuntu:nosuchtag not found: manifest unknown: manifest unknown"


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    sb = Sandbox(seed_cache=False).start()  # always exercise the real builds here
    try:
        yield sb
    finally:
        sb.stop()


def _procs_mentioning(text: str) -> list[str]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                cmdline = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline:
                found.append(f"{entry.name}: {cmdline}")
    return found


def test_seeded_registry_and_empty_engine(box: Sandbox) -> None:
    assert box.seed_seconds is not None
    with urllib.request.urlopen(f"{box.registry.url}/v2/_catalog") as resp:
        catalog = set(json.load(resp)["repositories"])
    assert {split_ref(img.ref)[0] for img in SEED_IMAGES} <= catalog
    assert {"library/ubuntu", "openresty/openresty"} <= catalog
    assert box.engine.cli("images", "-a", "-q").stdout == ""


def test_pull_default_tag_from_mirror(box: Sandbox) -> None:
    out = box.engine.cli("pull", "ubuntu").stdout.splitlines()
    assert out[0] == "Using default tag: latest"
    assert out[1] == "latest: Pulling from library/ubuntu"
    assert sum(line.endswith(": Pull complete") for line in out) == 2
    assert any(line.startswith("Digest: sha256:") for line in out)
    assert "Status: Downloaded newer image for ubuntu:latest" in out
    assert out[-1] == "docker.io/library/ubuntu:latest"
    assert box.engine.cli("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split() == [
        "ubuntu:latest"
    ]


def test_pull_user_image_with_three_layers(box: Sandbox) -> None:
    box.engine.cli("image", "prune", "-af")  # else the shared busybox layer "Already exists"
    out = box.engine.cli("pull", "openresty/openresty:1.13.6.2-alpine").stdout.splitlines()
    assert out[0] == "1.13.6.2-alpine: Pulling from openresty/openresty"
    assert sum(line.endswith(": Pull complete") for line in out) == 3
    assert "Status: Downloaded newer image for openresty/openresty:1.13.6.2-alpine" in out


def test_busybox_layer_is_shared(box: Sandbox) -> None:
    box.engine.cli("pull", "ubuntu")  # no-op if the test above ran
    out = box.engine.cli("pull", "redis:7").stdout.splitlines()
    assert sum(line.endswith(": Already exists") for line in out) == 1
    assert sum(line.endswith(": Pull complete") for line in out) == 1


def test_pull_errors_read_as_on_docker_hub(box: Sandbox) -> None:
    missing = box.engine.cli("pull", "nosuchimage", check=False)
    assert missing.returncode == 1
    assert missing.stderr.strip() == DENIED
    bad_tag = box.engine.cli("pull", "ubuntu:nosuchtag", check=False)
    assert bad_tag.stderr.strip() == f"Error response from daemon: {NO_TAG}"
    other_registry = box.engine.cli("pull", "ghcr.io/acme/app:1", check=False)  # reads as offline
    assert other_registry.stderr.strip() == (
        'Error response from daemon: Get "https://ghcr.io/v2/": dial tcp: lookup ghcr.io: no such host'
    )
    with pytest.raises(CliError, match="pull access denied"):
        box.engine.cli("pull", "nosuchimage")
    client = box.engine.client()
    try:
        with pytest.raises(docker.errors.ImageNotFound, match="repository does not exist"):
            client.images.pull("nosuchimage", tag="latest")
    finally:
        client.close()


def test_containers_run_and_block_rmi(box: Sandbox) -> None:
    engine = box.engine
    engine.cli("pull", "busybox")
    running = engine.cli("run", "-d", "busybox").stdout.strip()
    assert engine.cli("inspect", "-f", "{{.State.Running}}", running).stdout.strip() == "true"
    # dockerd 20.10 wants container names of 2+ characters: `--name c` is refused.
    assert "Invalid container name (c)" in engine.cli("create", "--name", "c", "busybox", check=False).stderr
    engine.cli("create", "--name", "c1", "busybox")
    rmi = engine.cli("rmi", "busybox", check=False)
    assert "conflict: unable to remove repository reference" in rmi.stderr
    engine.cli("rm", "-f", running, "c1")


def test_engine_restart_keeps_images(box: Sandbox) -> None:
    engine = box.engine
    engine.cli("pull", "alpine")
    engine.cli("run", "-d", "alpine")  # stops at once on shutdown (STOPSIGNAL SIGKILL)
    engine.stop()
    assert not engine.is_running()
    assert not _procs_mentioning(str(engine.data_root))
    engine.start()
    assert engine.is_running()
    assert "alpine:latest" in engine.cli("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()


def test_second_engine_over_tls(box: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    # requests lets REQUESTS_CA_BUNDLE override the client's own CA (psf/requests#3829).
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    server, client_files = make_tls(box.root / "tls")
    engine = box.add_engine("e2", tcp_tls=server)
    assert engine.tcp_host is not None
    tls = docker.tls.TLSConfig(
        client_cert=(str(client_files.cert), str(client_files.key)), ca_cert=str(client_files.ca), verify=True
    )
    client = docker.DockerClient(base_url=engine.tcp_host.replace("tcp://", "https://"), tls=tls)
    try:
        assert client.version()["ApiVersion"]
        client.images.pull("postgres", tag="16")
        assert "postgres:16" in client.images.get("postgres:16").tags
    finally:
        client.close()
    assert engine.cli("images", "-q")  # the CLI reaches it on its unix socket too


def test_seed_cache_restores_the_registry(
    box: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(seeding_mod, "SEED_CACHE", tmp_path / "cache")
    cache = seeding_mod._seed_cache_dir(SEED_IMAGES)
    seeding_mod._save_seed_cache(box.registry.storage, cache)
    with Sandbox() as other:
        assert other.seeded_from_cache
        assert other.engine.cli("images", "-q").stdout == ""
        assert "Status: Downloaded newer image for nginx:latest" in other.engine.cli("pull", "nginx").stdout


def test_start_failure_shows_the_log(tmp_path: Path) -> None:
    bad = TlsFiles(tmp_path / "no-ca.pem", tmp_path / "no-cert.pem", tmp_path / "no-key.pem")
    engine = Engine(Path(tempfile.mkdtemp(prefix="dbot-t-", dir="/tmp")), mirror=None, tcp_tls=bad)
    try:
        with pytest.raises(
            RuntimeError, match=r"(?s)dockerd for .* exited with 1.*no-cert\.pem: no such file"
        ):
            engine.start(timeout=20)
        assert not engine.is_running()
    finally:
        engine.stop()
        shutil.rmtree(engine.root, ignore_errors=True)


def test_teardown_leaves_nothing(box: Sandbox) -> None:
    root = str(box.root)
    box.stop()
    assert not _procs_mentioning(root + "/")
    assert root not in Path("/proc/mounts").read_text()
    assert not Path(root).exists()
    box.stop()  # idempotent
