"""A two-platform image in the sandbox registry, made with the registry's HTTP API (no build, no
download): an index of an existing linux/amd64 manifest and a small linux/arm64 one. An amd64 engine
pulls only its own platform."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import urllib.request

from bot.sandbox import Registry

SCHEMA2 = "application/vnd.docker.distribution.manifest.v2+json"
LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy


def _call(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with _OPENER.open(request, timeout=10) as resp:
        return resp.status, dict(resp.headers), resp.read()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _push_blob(registry: Registry, repo: str, data: bytes) -> str:
    digest = _digest(data)
    _, headers, _ = _call("POST", f"{registry.url}/v2/{repo}/blobs/uploads/")
    location = headers["Location"]
    if location.startswith("/"):
        location = registry.url + location
    sep = "&" if "?" in location else "?"
    _call("PUT", f"{location}{sep}digest={digest}", data, {"Content-Type": "application/octet-stream"})
    return digest


def push_two_platform_index(registry: Registry, repo: str, amd64_tag: str, tag: str) -> str:
    """Push `repo:tag` = index(amd64: the manifest of `repo:amd64_tag`, arm64: a one-file image).
    Returns the index digest."""
    _, headers, amd64 = _call(
        "GET", f"{registry.url}/v2/{repo}/manifests/{amd64_tag}", headers={"Accept": SCHEMA2}
    )
    assert headers["Content-Type"] == SCHEMA2, headers
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = f"arm64 of {repo}:{tag}\n".encode()
        info = tarfile.TarInfo("arm64.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    layer = gzip.compress(raw.getvalue(), mtime=0)
    config = json.dumps(
        {
            "architecture": "arm64",
            "os": "linux",
            "config": {"Cmd": ["/nothing"]},
            "rootfs": {"type": "layers", "diff_ids": [_digest(raw.getvalue())]},
            "history": [{"created_by": "test"}],
        }
    ).encode()
    config_digest = _push_blob(registry, repo, config)
    layer_digest = _push_blob(registry, repo, layer)
    arm64 = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": SCHEMA2,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": len(config),
                "digest": config_digest,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": len(layer),
                    "digest": layer_digest,
                }
            ],
        }
    ).encode()
    _call("PUT", f"{registry.url}/v2/{repo}/manifests/{_digest(arm64)}", arm64, {"Content-Type": SCHEMA2})
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": LIST,
            "manifests": [
                {
                    "mediaType": SCHEMA2,
                    "size": len(amd64),
                    "digest": _digest(amd64),
                    "platform": {"architecture": "amd64", "os": "linux"},
                },
                {
                    "mediaType": SCHEMA2,
                    "size": len(arm64),
                    "digest": _digest(arm64),
                    "platform": {"architecture": "arm64", "os": "linux"},
                },
            ],
        }
    ).encode()
    _call("PUT", f"{registry.url}/v2/{repo}/manifests/{tag}", index, {"Content-Type": LIST})
    return _digest(index)
