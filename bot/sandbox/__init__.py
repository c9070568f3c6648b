"""A private, real Docker Engine with a local registry as its Docker Hub mirror, seeded offline.

Used by the pytest harness and by `make run` when no engine is reachable. Everything lives under one
temp dir (data root, exec root, sockets, logs, registry storage); the system engine is never touched.

    python -m bot.sandbox up        # start, print DOCKER_HOST=..., run until Ctrl-C / SIGTERM
    python -m bot.sandbox install   # apt-get install the engine, the registry and a static busybox

How a pull resolves: dockerd asks the mirror (our registry) first. On a miss (unknown repo or tag) it
falls back to registry-1.docker.io, which it reaches only through HTTPS_PROXY = our HubProxy: a loopback
TLS-intercepting proxy (its CA handed to dockerd via SSL_CERT_FILE) that answers like Docker Hub from the
same registry, so errors read as on a real host (`pull access denied for X, repository does not exist…`).
Nothing ever leaves loopback.
"""

from __future__ import annotations

from bot.sandbox.engine import CliError, Engine
from bot.sandbox.hub import HubProxy
from bot.sandbox.newengine import EngineBinaries, fetch_new_engine
from bot.sandbox.packages import ensure_packages
from bot.sandbox.registry import Registry
from bot.sandbox.sandbox import Sandbox
from bot.sandbox.seeding import SEED_IMAGES, SeedImage, push_image, seed_registry, split_ref
from bot.sandbox.tls import TlsFiles, make_tls

__all__ = [
    "SEED_IMAGES",
    "CliError",
    "Engine",
    "EngineBinaries",
    "HubProxy",
    "Registry",
    "Sandbox",
    "SeedImage",
    "TlsFiles",
    "ensure_packages",
    "fetch_new_engine",
    "make_tls",
    "push_image",
    "seed_registry",
    "split_ref",
]
