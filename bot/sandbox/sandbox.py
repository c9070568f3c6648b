"""Sandbox: the registry, the Hub proxy and engines started, seeded and stopped together under one root."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from pathlib import Path
from types import TracebackType

from bot.sandbox.engine import Engine
from bot.sandbox.hub import HubProxy
from bot.sandbox.newengine import EngineBinaries
from bot.sandbox.packages import ensure_packages
from bot.sandbox.processes import _track, _unmount_under, _untrack
from bot.sandbox.registry import Registry
from bot.sandbox.seeding import SEED_IMAGES, _save_seed_cache, _seed_cache_dir, seed_registry
from bot.sandbox.tls import TlsFiles


class Sandbox:
    """Registry + HubProxy + one engine using the registry as Docker Hub mirror, all under `root`.

    `root` defaults to a new short temp dir (unix socket paths under it must stay < 100 chars), removed
    at stop(); a root you pass is kept (processes stopped, mounts undone) for reuse. With `seed_cache`,
    the seeded registry storage is saved under SEED_CACHE once and copied into later sandboxes, which then
    skip the builds (the engine starts empty either way)."""

    def __init__(self, root: Path | None = None, seed_cache: bool = True) -> None:
        self._own_root = root is None
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="dbot-", dir="/tmp"))
        self.registry = Registry(self.root / "registry")
        self.hub = HubProxy(self.root / "hub", self.registry)
        self.engine = Engine(self.root / "engine", mirror=self.registry.url, hub=self.hub)
        self.engines: list[Engine] = [self.engine]
        self.seed_cache = seed_cache
        self.seed_seconds: float | None = None
        self.seeded_from_cache = False

    @property
    def docker_host(self) -> str:
        return self.engine.docker_host

    def start(self, seed: bool = True) -> Sandbox:
        _track(self)
        try:
            ensure_packages()
            t0 = time.monotonic()
            cache = _seed_cache_dir(SEED_IMAGES) if seed and self.seed_cache else None
            if cache is not None and cache.is_dir():
                shutil.copytree(cache, self.registry.storage, dirs_exist_ok=True)
                self.seeded_from_cache = True
                self.seed_seconds = time.monotonic() - t0
            self.registry.start()
            self.hub.start()
            self.engine.start()
            if seed and not self.seeded_from_cache:
                t0 = time.monotonic()
                seed_registry(self.registry, self.engine)
                self.seed_seconds = time.monotonic() - t0
                if cache is not None:
                    _save_seed_cache(self.registry.storage, cache)
        except BaseException:
            self.stop()
            raise
        return self

    def add_engine(
        self,
        name: str,
        tcp_tls: TlsFiles | None = None,
        binaries: EngineBinaries | None = None,
        containerd_store: bool = False,
    ) -> Engine:
        """Start another engine (data root and socket under root/name) on the same mirror and Hub proxy."""
        engine = Engine(
            self.root / name,
            mirror=self.registry.url,
            tcp_tls=tcp_tls,
            hub=self.hub,
            binaries=binaries,
            containerd_store=containerd_store,
        )
        self.engines.append(engine)
        engine.start()
        return engine

    def stop(self) -> None:
        """Idempotent, and safe after a half-finished start."""
        for engine in reversed(self.engines):
            with contextlib.suppress(Exception):
                engine.stop()
        self.hub.stop()
        self.registry.stop()
        _unmount_under(self.root)
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)
        _untrack(self)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
