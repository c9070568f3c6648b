"""The bot's YAML config (DOCKERBOT_CONFIG): hosts, who may do what, named cleanup policies.

default_host: build
hosts:
  build: {url: "unix:///var/run/docker.sock"}
  prod:
    url: "tcp://10.0.0.5:2376"
    tls: {ca: /certs/ca.pem, cert: /certs/cert.pem, key: /certs/key.pem}
  edge: {url: "ssh://deploy@edge-1"}
access:
  channels: [C0OPS]             # answer only here (optional)
  default_role: viewer          # everyone else (viewer, operator, admin or none)
  roles: {admin: [U0ALICE], operator: [S0PLATFORM]}
  hosts: {prod: {admin: [U0BOB], viewer: ["*"]}}
policies:
  nightly: "unused-since 14d, keep-newest 3, exclude postgres:*"
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from bot.core.access import AccessPolicy
from bot.core.settings import Settings
from bot.engine.hosts import DockerHost, TlsPaths
from bot.errors import UserError

_SCHEMES = ("unix://", "tcp://", "ssh://", "http://", "https://", "npipe://")


class ConfigError(ValueError):
    pass


def load(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as error:
        raise ConfigError(f"DOCKERBOT_CONFIG: cannot read {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"DOCKERBOT_CONFIG: {path} is not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"DOCKERBOT_CONFIG: {path} must hold a mapping (hosts:, access:, policies:)")
    unknown = set(raw) - {"hosts", "default_host", "access", "policies"}
    if unknown:
        raise ConfigError(f"DOCKERBOT_CONFIG: unknown key(s) {', '.join(sorted(unknown))}")
    return raw


def hosts(raw: dict[str, Any], settings: Settings) -> list[DockerHost]:
    """The configured hosts, the default first; with none configured, `local` from DOCKER_HOST."""
    common = {"timeout": settings.docker_timeout, "max_pool_size": settings.workers}
    specs = raw.get("hosts") or {}
    if not specs:
        return [DockerHost(name="local", **common)]
    result = []
    for name, spec in specs.items():
        spec = spec or {}
        url = spec.get("url")
        if url is not None and not str(url).startswith(_SCHEMES):
            raise ConfigError(f"hosts.{name}.url: {url!r} must start with unix://, tcp:// or ssh://")
        tls = spec.get("tls")
        paths = None
        if tls:
            if not tls.get("cert") or not tls.get("key"):
                raise ConfigError(f"hosts.{name}.tls needs cert and key (and ca to verify the engine)")
            paths = TlsPaths(ca=tls.get("ca"), cert=tls["cert"], key=tls["key"])
        result.append(DockerHost(name=str(name), url=url, tls=paths, **common))
    default = raw.get("default_host")
    if default is not None:
        if default not in specs:
            raise ConfigError(f"default_host: {default!r} is not one of the hosts")
        result.sort(key=lambda h: h.name != default)
    return result


def access_policy(raw: dict[str, Any], settings: Settings) -> AccessPolicy:
    try:
        return AccessPolicy.from_config(
            raw.get("access"),
            admins=settings.admins,
            operators=settings.operators,
            channels=settings.channels,
            default_role=settings.default_role,
        )
    except ValueError as error:
        raise ConfigError(f"access: {error}") from None


def policies(raw: dict[str, Any]) -> dict[str, str]:
    named = raw.get("policies") or {}
    if not all(isinstance(v, str) for v in named.values()):
        raise ConfigError(
            'policies: each policy is a string of rules, e.g. "unused-since 14d, keep-newest 3"'
        )
    from bot.jobs.policy import check_policies

    named = {str(k): v for k, v in named.items()}
    try:
        check_policies(named)  # a bad rule stops start-up, not the 03:00 run
    except UserError as error:
        raise ConfigError(str(error)) from None
    return named
