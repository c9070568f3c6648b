"""Images made to order, without a registry: `docker load` of one archive holding many images
with any Created time, tags and labels (the engine keeps the config's `created` as it is)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bot.sandbox import Engine


@dataclass
class Spec:
    tags: list[str]  # [] for a dangling image
    age: float  # seconds before now, as the image's Created
    labels: dict[str, str] = field(default_factory=dict)


def _tar(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def load_images(engine: Engine, specs: list[Spec], now: float | None = None) -> list[str]:
    """`docker load` one archive holding every spec (Created = now - age); returns their image IDs."""
    now = time.time() if now is None else now
    files: dict[str, bytes] = {}
    manifest = []
    ids = []
    for n, spec in enumerate(specs):
        layer = _tar({"content.txt": f"{n} {spec.tags} {spec.age} {time.time_ns()}\n".encode()})
        created = datetime.fromtimestamp(now - spec.age, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "created": created,
                "config": {"Labels": spec.labels or None, "Cmd": ["/nothing"]},
                "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
                "history": [{"created": created}],
            }
        ).encode()
        digest = hashlib.sha256(config).hexdigest()
        files[f"{digest}.json"] = config
        files[f"layer{n}/layer.tar"] = layer
        manifest.append(
            {"Config": f"{digest}.json", "RepoTags": spec.tags, "Layers": [f"layer{n}/layer.tar"]}
        )
        ids.append(f"sha256:{digest}")
    files["manifest.json"] = json.dumps(manifest).encode()
    loaded_ids = []  # "Loaded image ID: …" for untagged images, in archive order
    client = engine.client()
    try:
        for event in client.api.load_image(_tar(files)):  # a stream: the load is done when it ends
            assert "error" not in event, event
            line = str(event.get("stream") or "").strip()
            if line.startswith("Loaded image ID: "):
                loaded_ids.append(line.removeprefix("Loaded image ID: "))
        if not engine.containerd_store:
            return ids  # the classic store's image ID is the config digest computed above
        # The containerd store's image ID is the digest of a manifest the engine writes on load: ask it.
        untagged = iter(loaded_ids)
        return [
            client.api.inspect_image(spec.tags[0])["Id"] if spec.tags else next(untagged) for spec in specs
        ]
    finally:
        client.close()
