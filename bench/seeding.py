"""Many small images, fast: one `docker load` of a generated archive instead of a build or import each.

An archive in `docker save`'s format holds, per image, a config (its own label, so its own image ID)
and a one-file layer; `RepoTags` in manifest.json tags it on load, so no `docker tag` call is needed.
With `shared_layer` every image points at the same layer (the engine stores it once: ~25 ms an image);
without it each image has its own layer, as `docker import` gives (~100 ms an image).

Tens of thousands of tags are another matter on the classic store: every tag the engine adds or
removes (load, `docker tag`, pull, rmi) marshals all its tags and rewrites its tag file,
`image/<driver>/repositories.json`, atomically (moby reference/store.go, `save`), so tagging N
images one by one costs O(N²): here (2 shared cores) 10,000 tags took 166 s by load; the API's
/images/{id}/tag had reached 85 s at 5,000. `load_many_tags` loads the images untagged and writes
their tags into that file while the engine is stopped: the engine reads it on start, as after a reboot.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import docker

from bot.sandbox.engine import Engine

DAY = 86400
LOADED_ID = re.compile(r"^Loaded image ID: (sha256:[0-9a-f]{64})$", re.M)
METHOD = "one `docker load` of a generated archive (images share one layer)"


@dataclass(frozen=True)
class Seeded:
    images: int
    tags: int
    seconds: float
    method: str


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _layer(text: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        _add(tar, "bench.txt", text.encode())
    return buf.getvalue()


def archive(
    prefix: str, count: int, tags_per_image: int, *, start: int = 0, shared_layer: bool = True
) -> bytes:
    """Images `{prefix}{i}` for i in [start, start+count), tagged v0..v{n-1}, created 1-90 days ago."""
    now = time.time()
    manifest = []
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        layer_name, diff_id = "", ""
        for i in range(start, start + count):
            if not layer_name or not shared_layer:
                data = _layer(f"{prefix}{i}\n")
                layer_name = f"{prefix.replace('/', '_')}{i}/layer.tar"
                diff_id = "sha256:" + hashlib.sha256(data).hexdigest()
                _add(tar, layer_name, data)
            created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - DAY * (1 + i % 90) - i))
            config = {
                "architecture": "amd64",
                "os": "linux",
                "created": created,
                "config": {"Labels": {"dockerbot.bench": f"{prefix}{i}"}},
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                "history": [{"created": created, "created_by": "dockerbot bench"}],
            }
            raw = json.dumps(config, sort_keys=True).encode()
            config_name = hashlib.sha256(raw).hexdigest() + ".json"
            _add(tar, config_name, raw)
            tags = [f"{prefix}{i}:v{k}" for k in range(tags_per_image)]
            manifest.append({"Config": config_name, "RepoTags": tags, "Layers": [layer_name]})
        _add(tar, "manifest.json", json.dumps(manifest).encode())
    return out.getvalue()


def load(
    api: docker.APIClient,
    prefix: str,
    count: int,
    tags_per_image: int = 1,
    *,
    start: int = 0,
    shared_layer: bool = True,
) -> Seeded:
    """Load `count` images into the engine; raises if the engine reports an error."""
    started = time.perf_counter()
    data = archive(prefix, count, tags_per_image, start=start, shared_layer=shared_layer)
    for event in api.load_image(data):
        if "error" in event or "errorDetail" in event:
            raise RuntimeError(f"docker load: {event.get('error') or event.get('errorDetail')}")
    method = METHOD if shared_layer else "one `docker load` of a generated archive (a layer each)"
    return Seeded(count, count * tags_per_image, time.perf_counter() - started, method)


def count_images(api: docker.APIClient, prefix: str) -> int:
    """Distinct images with a tag under `prefix`."""
    return sum(1 for i in api.images() if any(t.startswith(prefix) for t in i.get("RepoTags") or []))


def load_many_tags(
    engine: Engine, api: docker.APIClient, prefix: str, count: int, tags_per_image: int
) -> Seeded:
    """`count` images `{prefix}{i}`, tagged v0..v{n-1}, on a classic-store engine, in seconds not minutes
    (see the module's note); restarts the engine once. Raises if the engine does not list every tag."""
    started = time.perf_counter()
    ids = []
    for event in api.load_image(archive(prefix, count, 0)):
        if "error" in event or "errorDetail" in event:
            raise RuntimeError(f"docker load: {event.get('error') or event.get('errorDetail')}")
        ids += LOADED_ID.findall(str(event.get("stream", "")))
    if len(ids) != count:
        raise RuntimeError(f"docker load reported {len(ids)} image IDs, not {count}")
    [image_store] = Path(engine.data_root, "image").glob("*/imagedb")  # one per graph driver: overlay2
    tag_file = image_store.parent / "repositories.json"
    engine.stop()
    store = json.loads(tag_file.read_text()) if tag_file.exists() else {}
    repositories = store.setdefault("Repositories", {})
    for i, image_id in enumerate(ids):
        repo = f"{prefix}{i}"
        repositories[repo] = {f"{repo}:v{k}": image_id for k in range(tags_per_image)}
    tag_file.write_text(json.dumps(store))
    engine.start()
    listed = sum(len(s.get("RepoTags") or []) for s in api.images(filters={"reference": f"{prefix}*"}))
    if listed != count * tags_per_image:
        raise RuntimeError(f"the engine lists {listed} tags under {prefix}, not {count * tags_per_image}")
    method = "`docker load` untagged, tags written to the stopped engine's repositories.json"
    return Seeded(count, count * tags_per_image, time.perf_counter() - started, method)
