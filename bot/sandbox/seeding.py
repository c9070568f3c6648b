"""Images for the mirror, built FROM scratch with busybox on an engine and pushed offline; the seed set
and the on-disk cache of seeded registry storage that lets later sandboxes skip the builds.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bot.sandbox.engine import Engine
from bot.sandbox.packages import BUSYBOX
from bot.sandbox.registry import Registry

SEED_CACHE = Path("/tmp/dbot-seed-cache")


@dataclass(frozen=True)
class SeedImage:
    """An image pushed to the mirror: `ref` as a user types it ("ubuntu:22.04", "openresty/openresty:…")."""

    ref: str
    layers: int = 2
    labels: dict[str, str] = field(default_factory=dict)
    big_file_mb: int = 0

    def files(self) -> dict[str, bytes]:
        # A small file unique to the ref gives each image its own top layer, hence its own ID.
        return {"etc/dockerbot-seed": f"{self.ref}\n".encode()}


SEED_IMAGES: list[SeedImage] = [
    SeedImage("ubuntu:latest"),
    SeedImage("ubuntu:22.04"),
    SeedImage("redis:6"),
    SeedImage("redis:7"),
    SeedImage("alpine:latest"),
    SeedImage("nginx:latest"),
    SeedImage("postgres:16"),
    SeedImage("busybox:latest"),
    SeedImage("openresty/openresty:1.13.6.2-alpine", layers=3),
]


def split_ref(name: str) -> tuple[str, str]:
    """Registry path and tag: "ubuntu" -> ("library/ubuntu", "latest"); "ns/app:1" -> ("ns/app", "1")."""
    repo, tag = name, "latest"
    if ":" in name.rsplit("/", 1)[-1]:
        repo, tag = name.rsplit(":", 1)
    if "/" not in repo:
        repo = f"library/{repo}"
    return repo, tag


def _check_stream(events: Iterable[dict[str, Any]], what: str) -> list[dict[str, Any]]:
    seen = []
    for ev in events:
        seen.append(ev)
        if "error" in ev or "errorDetail" in ev:
            msg = ev.get("error") or (ev.get("errorDetail") or {}).get("message")
            raise RuntimeError(f"{what}: {msg}")
    return seen


def _build_context(
    out: IO[bytes], name: str, files: dict[str, bytes], layers: int, labels: dict[str, str], big_file_mb: int
) -> None:
    """Writes a tar build context: busybox, then `files` (+ big.bin) in one layer, then filler layers."""
    lines = ["FROM scratch", "COPY busybox /bin/busybox"]
    with tarfile.open(fileobj=out, mode="w") as tar:

        def add(arcname: str, data: bytes = b"", path: Path | None = None, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(arcname)
            info.mode = mode  # mtime 0: identical content gives an identical (shared) layer
            if path is None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                return
            info.size = path.stat().st_size
            with path.open("rb") as f:
                tar.addfile(info, f)

        add("busybox", path=BUSYBOX, mode=0o755)
        used = 1
        if files or big_file_mb:
            for rel, data in files.items():
                add(f"files/{rel.lstrip('/')}", data)
            if big_file_mb:
                # Random bytes do not compress, so a pull moves the full size (benchmarks).
                with tempfile.NamedTemporaryFile() as big:
                    for _ in range(big_file_mb):
                        big.write(os.urandom(1 << 20))
                    big.flush()
                    add("files/big.bin", path=Path(big.name))
            lines.append("COPY files/ /")
            used += 1
        for i in range(used + 1, layers + 1):
            add(f"layer{i}.txt", f"{name} layer {i}\n".encode())
            lines.append(f"COPY layer{i}.txt /.layer{i}")
        if labels:
            lines.append("LABEL " + " ".join(f"{json.dumps(k)}={json.dumps(v)}" for k, v in labels.items()))
        # busybox sleep as PID 1 ignores SIGTERM: without this, every `docker stop` and every engine
        # shutdown with a running container would wait the full 10 s stop timeout.
        lines.append("STOPSIGNAL SIGKILL")
        lines.append('CMD ["/bin/busybox", "sleep", "3600"]')
        add("Dockerfile", ("\n".join(lines) + "\n").encode())
    out.seek(0)


def _build_and_push(
    builder: Engine,
    registry: Registry,
    name: str,
    files: dict[str, bytes],
    layers: int,
    labels: dict[str, str] | None,
    big_file_mb: int,
) -> str:
    """Build and push; returns the local tag (<registry>/<path>:<tag>), still present on the builder."""
    repo, tag = split_ref(name)
    target = f"{registry.address}/{repo}"
    needed = 1 + bool(files or big_file_mb)
    if layers < needed:
        raise ValueError(f"{name}: {layers} layers is fewer than the {needed} its content needs")
    client = builder.client()
    try:
        with tempfile.SpooledTemporaryFile(max_size=64 << 20) as ctx:
            _build_context(ctx, name, files, layers, labels or {}, big_file_mb)
            stream = client.api.build(
                fileobj=ctx, custom_context=True, tag=f"{target}:{tag}", rm=True, forcerm=True, decode=True
            )
            _check_stream(stream, f"build {name}")
        _check_stream(client.api.push(target, tag=tag, stream=True, decode=True), f"push {name}")
    finally:
        client.close()
    return f"{target}:{tag}"


def push_image(
    builder: Engine,
    registry: Registry,
    name: str,
    files: dict[str, bytes],
    layers: int = 2,
    labels: dict[str, str] | None = None,
    big_file_mb: int = 0,
) -> None:
    """Build `name` FROM scratch on `builder` (busybox layer, a layer with `files` and big.bin of
    `big_file_mb` random MiB, filler layers up to `layers`), push it to `registry` under
    <address>/library/<repo>:<tag> (official) or <address>/<ns>/<repo>:<tag>, then remove it locally."""
    local = _build_and_push(builder, registry, name, files, layers, labels, big_file_mb)
    client = builder.client()
    try:
        client.api.remove_image(local, force=True)
    finally:
        client.close()


def seed_registry(registry: Registry, builder: Engine, images: Iterable[SeedImage] = SEED_IMAGES) -> None:
    """Push the images to the registry through `builder`, then remove them from the builder.

    Builds run 3 at a time (the legacy builder spends ~0.2 s per step), and local copies are removed only
    at the end so the shared busybox step stays in the build cache throughout."""

    def one(img: SeedImage) -> str:
        return _build_and_push(
            builder, registry, img.ref, img.files(), img.layers, img.labels, img.big_file_mb
        )

    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = [pool.submit(one, img) for img in images]
    client = builder.client()
    try:
        for done in futures:
            if done.exception() is None:
                client.api.remove_image(done.result(), force=True)
    finally:
        client.close()
    for done in futures:
        done.result()  # re-raises the first failure


def _seed_cache_dir(images: list[SeedImage]) -> Path:
    # Keyed by the sandbox's code, busybox and the image list: any change to how images are made starts
    # afresh.
    code = b"".join(p.read_bytes() for p in sorted(Path(__file__).parent.glob("*.py")))
    key = hashlib.sha256(code + BUSYBOX.read_bytes() + repr(images).encode())
    return SEED_CACHE / key.hexdigest()[:16]


def _save_seed_cache(storage: Path, cache: Path) -> None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cache.parent))
    try:
        shutil.copytree(storage, tmp, dirs_exist_ok=True)
        tmp.rename(cache)  # atomic; fails harmlessly if another sandbox saved it first
    except OSError:
        pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
