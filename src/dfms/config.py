"""Settings: one YAML file plus ``DFMS_...`` environment overrides, loaded once and passed down.

Precedence (highest first): explicit values from the command line, environment variables
(``DFMS_SERVER__PORT=9000``; nested keys joined by ``__``), the YAML file given with ``--config``
(or ``DFMS_CONFIG``), then the embedded defaults. Nothing here runs at import time: callers build
a :class:`Settings` with :func:`load_settings` and hand it to the factories that need it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from dfms.errors import ConfigError

GiB = 1024**3
MiB = 1024**2
KiB = 1024


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    #: Seconds a client may take to send the next piece of a request body.
    read_timeout: float = Field(default=60.0, gt=0)
    #: Seconds a client may take to send a request's headers (slow-header clients are cut off).
    header_timeout: float = Field(default=30.0, gt=0, le=3600)
    #: Largest request header block in bytes (431 beyond; at least 8 KiB, the server's minimum).
    max_header_bytes: int = Field(default=64 * KiB, ge=8 * KiB, le=16 * MiB)
    #: Origins allowed by CORS; empty disables CORS.
    cors_origins: list[str] = Field(default_factory=list)
    #: Public base URL used in logs and links; derived from host/port when empty.
    public_url: str = ""


class DatabaseSettings(_Section):
    #: SQLAlchemy URL. Empty: SQLite file ``<data_dir>/dfms.db`` (embedded mode).
    url: str = ""
    echo: bool = False
    pool_size: int = Field(default=10, ge=1)


class ChunkingSettings(_Section):
    algorithm: Literal["fastcdc", "rabin"] = "fastcdc"
    min_size: int = 256 * KiB
    avg_size: int = 1 * MiB
    max_size: int = 4 * MiB

    @model_validator(mode="after")
    def _check(self) -> ChunkingSettings:
        # Delegate to the chunking package's own validation so there is one rule set.
        from dfms.chunking.params import ChunkParams
        from dfms.errors import ValidationFailed

        try:
            ChunkParams(self.algorithm, self.min_size, self.avg_size, self.max_size)
        except ValidationFailed as exc:
            raise ValueError(exc.message) from exc
        return self


class NodeSettings(_Section):
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    #: Directory of a local node (embedded mode).
    path: Path | None = None
    zone: str = "default"
    weight: float = Field(default=1.0, gt=0, le=100)


class StorageSettings(_Section):
    #: Explicit node list; empty: ``node_count`` local nodes under ``<data_dir>/nodes/``.
    nodes: list[NodeSettings] = Field(default_factory=list)
    node_count: int = Field(default=1, ge=1, le=64)
    replication: int = Field(default=1, ge=1, le=16)
    #: Write quorum; 0 means a majority of ``replication``.
    write_quorum: int = Field(default=0, ge=0, le=16)
    vnodes_per_node: int = Field(default=150, ge=1, le=10000)
    fsync: Literal["always", "batch", "never"] = "batch"
    #: Keep chunks in the page cache once written and fsynced (false: drop them, for
    #: write-heavy nodes; see docs/operations.md, "Page cache").
    cache_written: bool = True
    #: Seconds one store operation may take before the replica counts as failed.
    timeout: float = Field(default=10.0, gt=0)
    #: Chunks written to the stores concurrently by one upload.
    write_concurrency: int = Field(default=8, ge=1, le=256)

    @property
    def effective_write_quorum(self) -> int:
        return self.write_quorum or (self.replication // 2 + 1)

    @model_validator(mode="after")
    def _check(self) -> StorageSettings:
        count = len(self.nodes) or self.node_count
        if self.replication > count:
            raise ValueError(
                f"replication={self.replication} exceeds the number of storage nodes ({count})"
            )
        if self.write_quorum > self.replication:
            raise ValueError(
                f"write_quorum={self.write_quorum} exceeds replication={self.replication}"
            )
        ids = [n.id for n in self.nodes]
        if len(ids) != len(set(ids)):
            raise ValueError("node ids must be unique")
        return self


class AuthSettings(_Section):
    #: Directory of ES256 signing keys (``*.pem``); empty: ``<data_dir>/keys``.
    keys_dir: Path | None = None
    issuer: str = "dfms-auth"
    audience: str = "dfms-api"
    access_ttl: int = Field(default=15 * 60, ge=10)
    refresh_ttl: int = Field(default=7 * 24 * 3600, ge=60)
    bcrypt_rounds: int = Field(default=12, ge=4, le=16)
    #: Seconds of clock skew tolerated when checking exp/nbf/iat.
    leeway: int = Field(default=10, ge=0, le=300)
    #: Seconds a gateway caches a user's active flag and role between the per-request checks
    #: (0: read them on every request). Capped at ``access_ttl``: a disabled account's access
    #: tokens stop working within this time (at once on the gateway that disabled it).
    active_cache_ttl: float = Field(default=30.0, ge=0, le=3600)


class UploadSettings(_Section):
    #: Largest accepted file (bytes); the body is refused with 413 as soon as it crosses this.
    max_size: int = Field(default=10 * GiB, ge=1)
    #: Quota of a new user (bytes).
    default_quota: int = Field(default=5 * GiB, ge=0)
    #: Largest JSON body accepted by non-upload routes.
    max_json_body: int = Field(default=1 * MiB, ge=1024)


class VersionSettings(_Section):
    #: Versions kept per file; older ones are released in the transaction that adds a new one.
    retention: int = Field(default=50, ge=1, le=100_000)


class MultipartSettings(_Section):
    #: Smallest accepted part (bytes), except the last part of an upload.
    min_part_size: int = Field(default=5 * MiB, ge=1)
    #: Seconds an upload session lives after it was started; its parts are released afterwards.
    session_ttl: int = Field(default=24 * 3600, ge=60)


class GCSettings(_Section):
    """Garbage collection (docs/gc.md)."""

    #: Run GC passes on a schedule inside ``dfms serve``.
    enabled: bool = True
    #: Seconds an unreferenced chunk stays marked before a pass may delete it; orphan bytes (no
    #: record) must be this old too. 0 deletes at the first pass (tests).
    grace_period: float = Field(default=24 * 3600, ge=0)
    #: Seconds between scheduled passes (``dfms serve``).
    interval: float = Field(default=6 * 3600, gt=0)
    #: Chunks per GC transaction and per store delete call (bounds memory and lock time).
    batch_size: int = Field(default=500, ge=1, le=10_000)
    #: Seconds a GC runner's lease lasts without renewal; a crashed runner's lease expires then.
    lease_ttl: float = Field(default=300, ge=1)
    #: Seconds an in-flight upload's chunk pins last without renewal (every dedup lookup renews
    #: them); an upload slower than this between two lookups, or than this before its commit,
    #: fails with a retryable error instead of risking collected chunks.
    pin_ttl: float = Field(default=3600, ge=1)


_LIMIT_OFF = ("", "off", "none", "null", "false")
_STORAGE_SCHEMES = ("memory", "redis", "rediss", "redis+unix")


class RateLimitSettings(_Section):
    """Rate limits of the HTTP API (README "Rate limits"). A tier's limit is a ``limits`` string
    such as ``"200/minute"`` or ``"10/second"``; empty or null turns that tier off."""

    enabled: bool = True
    #: ``memory://`` (per gateway process) or ``redis://host:6379/0`` (``rediss://``,
    #: ``redis+unix://``): one budget shared by every gateway using the same Redis.
    storage_url: str = "memory://"
    strategy: Literal["moving-window", "sliding-window"] = "moving-window"
    #: When the storage fails: true lets requests through (warning, metric); false answers 503.
    fail_open: bool = True
    #: Seconds a connect or command to the storage may take before it counts as failed.
    storage_timeout: float = Field(default=0.5, gt=0, le=30)
    #: First part of every key, so several deployments (or test runs) can share one Redis.
    key_prefix: str = Field(
        default="dfms", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$"
    )
    #: Reverse proxies (IPs or CIDRs) whose X-Forwarded-For is believed for the client address.
    trusted_proxies: list[str] = Field(default_factory=list)
    #: All API requests together, per gateway (memory) or per Redis (shared).
    global_limit: str | None = "10000/minute"
    #: Per authenticated user, all routes.
    user_limit: str | None = "200/minute"
    #: Per client IP on POST /auth/login, /auth/register and /auth/refresh.
    auth_limit: str | None = "5/minute"
    #: Per user on uploads (POST /files/upload, multipart init, part and complete).
    upload_limit: str | None = "20/minute"
    #: Per user on GET .../download routes.
    download_limit: str | None = "100/minute"

    @field_validator(
        "global_limit", "user_limit", "auth_limit", "upload_limit", "download_limit", mode="before"
    )
    @classmethod
    def _limit(cls, v: Any) -> str | None:
        if v is None or v is False or (isinstance(v, str) and v.strip().lower() in _LIMIT_OFF):
            return None  # YAML reads a bare `off` as false
        if not isinstance(v, str):
            raise ValueError("must be a limit such as '200/minute', or empty to turn it off")
        from limits import parse_many

        try:
            items = parse_many(v)
        except ValueError as exc:
            raise ValueError(f"{v!r} is not a limit such as '200/minute' or '10/second'") from exc
        if len(items) != 1:
            raise ValueError(f"{v!r}: give one limit per tier")
        if items[0].amount < 1:
            raise ValueError(f"{v!r}: the amount must be >= 1 (leave it empty to turn it off)")
        return v.strip()

    @field_validator("storage_url")
    @classmethod
    def _storage(cls, v: str) -> str:
        scheme = v.split("://", 1)[0].lower().removeprefix("async+") if "://" in v else ""
        if scheme not in _STORAGE_SCHEMES:
            raise ValueError("must start with memory://, redis://, rediss:// or redis+unix://")
        return v

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        import ipaddress

        out = []
        for entry in v:
            try:
                out.append(str(ipaddress.ip_network(entry.strip(), strict=False)))
            except ValueError as exc:
                raise ValueError(f"{entry!r} is not an IP address or CIDR network") from exc
        return out


class LoggingSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["console", "json"] = "console"


class Settings(BaseSettings):
    """All of DFMS's configuration. Build with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="DFMS_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    data_dir: Path = Path("./data")
    server: ServerSettings = Field(default_factory=ServerSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    chunking: ChunkingSettings = Field(default_factory=ChunkingSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    upload: UploadSettings = Field(default_factory=UploadSettings)
    versions: VersionSettings = Field(default_factory=VersionSettings)
    multipart: MultipartSettings = Field(default_factory=MultipartSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    gc: GCSettings = Field(default_factory=GCSettings)
    ratelimit: RateLimitSettings = Field(default_factory=RateLimitSettings)

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return v.expanduser().absolute()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_settings merges file, environment and overrides itself (CLI > env > file).
        return (init_settings,)

    # ---- derived locations (embedded layout) ----
    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite+aiosqlite:///{self.data_dir / 'dfms.db'}"

    @property
    def keys_dir(self) -> Path:
        return self.auth.keys_dir or self.data_dir / "keys"

    def node_list(self) -> list[NodeSettings]:
        """The storage nodes: the configured list, or ``node_count`` local directories."""
        if self.storage.nodes:
            return [
                n if n.path else n.model_copy(update={"path": self.data_dir / "nodes" / n.id})
                for n in self.storage.nodes
            ]
        return [
            NodeSettings(id=f"node-{i}", path=self.data_dir / "nodes" / f"node-{i}")
            for i in range(1, self.storage.node_count + 1)
        ]


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _format_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{key}: {err['msg']}")
    return "invalid configuration: " + "; ".join(parts)


def load_settings(
    config_file: Path | str | None = None,
    *,
    overrides: dict[str, Any] | None = None,
) -> Settings:
    """Load settings from an optional YAML file, the environment and explicit overrides.

    ``overrides`` are nested dicts of values given on the command line (``None`` values are
    dropped so that an absent flag does not mask the file or environment). Raises
    :class:`ConfigError` naming the offending key.
    """
    values: dict[str, Any] = {}
    path = config_file or os.environ.get("DFMS_CONFIG") or None
    if path:
        p = Path(path)
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read configuration file {p}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"configuration file {p} is not valid YAML: {exc}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"configuration file {p} must contain a mapping at the top level")
        values = loaded
    merged = _deep_merge(_deep_merge(values, _env_values()), _drop_none(overrides or {}))
    try:
        return Settings(**merged)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc)) from exc


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            sub = _drop_none(v)
            if sub:
                out[k] = sub
        elif v is not None:
            out[k] = v
    return out


def _env_values() -> dict[str, Any]:
    """``DFMS_A__B=v`` environment variables as a nested dict (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for name, raw in os.environ.items():
        if not name.startswith("DFMS_"):
            continue
        path = name[5:].lower().split("__")
        if not all(path) or path[0] not in Settings.model_fields:
            continue  # DFMS_CONFIG, DFMS_TEST_..., typos of unknown sections are not settings
        try:
            value: Any = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            value = raw
        if value is None:
            value = raw
        cursor = out
        for part in path[:-1]:
            nxt = cursor.setdefault(part, {})
            if not isinstance(nxt, dict):
                break
            cursor = nxt
        else:
            cursor[path[-1]] = value
    return out


#: How ``dfms serve``/``dfms gateway`` hand settings and role to the ASGI server's workers.
SETTINGS_ENV = "DFMS_SERVE_SETTINGS"
ROLE_ENV = "DFMS_SERVE_ROLE"

#: ``serve``: the all-in-one server (migrates, creates keys, runs the GC schedule);
#: ``gateway``: the HTTP API only (the schema must be current and a key present; no workers).
ServerRole = Literal["serve", "gateway"]


def settings_to_env(settings: Settings) -> str:
    """Settings as the JSON a worker process rebuilds them from."""
    return json.dumps(settings.model_dump(mode="json"))
