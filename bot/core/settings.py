"""Settings from the environment. The bot's own keys start with DOCKERBOT_;
Slack's and Docker's keep their usual names (SLACK_BOT_TOKEN, DOCKER_HOST, ...)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class RegistryCredentials(BaseModel):
    username: str
    password: SecretStr


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DOCKERBOT_", extra="ignore", frozen=True)

    data_dir: Path = Path("data")
    database_url: str | None = None
    hub_url: str = "https://hub.docker.com"
    hub_timeout: float = Field(10.0, gt=0)
    # The registry that answers for Docker Hub names (`/docker outdated`): Hub's, or a mirror.
    hub_registry_url: str = "https://registry-1.docker.io"
    registry_timeout: float = Field(10.0, gt=0)  # per registry request (`outdated`)
    registry_concurrency: int = Field(4, ge=1, le=64)  # registry requests in flight at once (`outdated`)
    workers: int = Field(32, ge=1, le=1024)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    docker_timeout: float = Field(60.0, gt=0)
    host_timeout: float = Field(20.0, gt=0)  # per host, when a command runs on several at once
    fleet_run_timeout: float = Field(3600.0, gt=0)  # per host, for a scheduled run on several hosts
    pull_inactivity_timeout: float = Field(120.0, gt=0)
    pull_deadline: float = Field(1800.0, gt=0)  # the most one pull may take, however it progresses
    max_pulls_per_user: int = Field(3, ge=1)  # pull requests waiting at once, per Slack user
    max_pulls_per_host: int = Field(8, ge=1)  # ... per Docker host
    max_pulls: int | None = Field(None, ge=1)  # ... in all (default: half the workers, the rest for reads)
    confirm_ttl: int = Field(600, ge=10)
    min_schedule_interval: int = Field(300, ge=60)  # seconds between two runs of one schedule
    max_schedules_per_channel: int = Field(20, ge=1)
    # The YAML config: hosts, access, named policies (see bot/core/config_file.py).
    config: Path | None = None
    # Shortcuts for the simple case: Slack IDs (users U…, user groups S…, channels C…).
    admins: Annotated[tuple[str, ...], NoDecode] = ()
    operators: Annotated[tuple[str, ...], NoDecode] = ()
    channels: Annotated[tuple[str, ...], NoDecode] = ()  # answer only in these channels
    # What a Slack user gets when nothing grants them a role: deny by default (`none`).
    default_role: Literal["viewer", "operator", "admin", "none"] = "none"
    # Audit entries also go to this file as JSON lines ("-" for stdout), for log shippers.
    audit_file: Path | None = None
    # {"registry.example.com:5000": {"username": "...", "password": "..."}} as JSON.
    registry_auth: dict[str, RegistryCredentials] = {}
    port: int = Field(3000, ge=0, le=65535)
    health_port: int = Field(8080, ge=0, le=65535)
    # Where /healthz, /readyz and /metrics listen (both modes); default: serve's --host.
    health_host: str | None = None
    max_body_bytes: int = Field(1_000_000, ge=1024)
    # Several replicas on one PostgreSQL: this one's name (in /metrics and the logs; a pod's name by
    # default), and how long the scheduler lease lasts unless its holder renews it.
    replica: str = Field(default_factory=socket.gethostname, min_length=1, max_length=100)
    lease_seconds: float = Field(30.0, ge=1, le=3600)
    http_header_timeout: float = Field(10.0, gt=0)  # a request's line and headers, from connecting

    slack_bot_token: SecretStr | None = Field(None, validation_alias=AliasChoices("SLACK_BOT_TOKEN"))
    slack_app_token: SecretStr | None = Field(None, validation_alias=AliasChoices("SLACK_APP_TOKEN"))
    slack_signing_secret: SecretStr | None = Field(
        None, validation_alias=AliasChoices("SLACK_SIGNING_SECRET")
    )
    # Pinning: refuse validly signed requests from another workspace or app (optional).
    slack_team_id: str | None = None
    slack_app_id: str | None = None
    slack_api_url: str | None = Field(None, validation_alias=AliasChoices("SLACK_API_URL"))

    @field_validator("admins", "operators", "channels", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("hub_url", "hub_registry_url", "slack_api_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value


def env_key(field_name: str) -> str:
    """The environment variable a settings field is read from."""
    info = Settings.model_fields[field_name]
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"DOCKERBOT_{field_name.upper()}"


def describe_error(error: ValidationError) -> str:
    """'DOCKERBOT_WORKERS: Input should be ...' lines, naming the environment keys."""
    lines = []
    for item in error.errors():
        name = str(item["loc"][0]) if item["loc"] else "?"
        key = env_key(name) if name in Settings.model_fields else name
        lines.append(f"{key}: {item['msg']}")
    return "\n".join(lines)


def max_pulls(settings: Settings) -> int:
    """Pulls waiting at once in all: the setting, or half the workers (never all of them: reads
    such as `images` keep the rest)."""
    if settings.max_pulls is not None:
        return min(settings.max_pulls, max(settings.workers - 1, 1))
    return max(settings.workers // 2, 1)
