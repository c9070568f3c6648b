"""The local registry (`docker-registry serve`) that every sandbox engine uses as its Docker Hub mirror."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

from bot.sandbox.packages import REGISTRY_BIN
from bot.sandbox.processes import _free_port, _terminate, _track, _untrack, spawn_logged, wait_ready


def _http_ok(url: str, timeout: float = 1.0) -> bool:
    # No proxies: a developer's http_proxy must not intercept loopback checks.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


class Registry:
    """`docker-registry serve` (distribution 2.x) on 127.0.0.1:<free port>, storage under root, deletes on."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = Path(root)
        # Chosen now so the mirror URL is known before anything starts (engines take it at construction).
        self.port = port or _free_port()
        self.storage = self.root / "storage"
        self.log = self.root / "registry.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 15) -> None:
        if self.is_running():
            return
        self.storage.mkdir(parents=True, exist_ok=True)
        config = self.root / "config.yml"  # JSON is valid YAML
        storage = {"filesystem": {"rootdirectory": str(self.storage)}, "delete": {"enabled": True}}
        log_cfg = {"level": "info", "accesslog": {"disabled": True}}
        config.write_text(
            json.dumps({"version": 0.1, "log": log_cfg, "storage": storage, "http": {"addr": self.address}})
        )
        self._proc = spawn_logged([REGISTRY_BIN, "serve", str(config)], self.log)
        _track(self)
        wait_ready(
            self._proc,
            lambda: _http_ok(f"{self.url}/v2/"),
            what=f"docker-registry on {self.address}",
            log=self.log,
            stop=self.stop,
            timeout=timeout,
        )

    def stop(self) -> None:
        if self._proc is not None:
            _terminate(self._proc, self._proc.pid, timeout=5)
            self._proc = None
        _untrack(self)
