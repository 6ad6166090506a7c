"""The one Settings class: every knob of the service, read from the environment and `.env`."""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

import limits
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from redis.connection import parse_url as redis_url

from app.db.url import DatabaseTarget, DatabaseUrlError, parse_database_url

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
MIN_JWT_SECRET_BYTES = 32
REPO_ROOT = Path(__file__).resolve().parents[2]
# A header field name: RFC 9110's token.
# A DNS name, IPv4 address or bracketed IPv6 address, without a port.
HOST_NAME = re.compile(r"[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]")
HEADER_NAME = re.compile(r"[!#$%&'+.^_`|~0-9A-Za-z-]+")
LISTEN_NEEDS_POSTGRES = (
    "DATABASE_LISTEN_URL must point at PostgreSQL directly when DATABASE_URL goes through PgBouncer"
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    # Database. Unset means "development": the run command starts an embedded PostgreSQL.
    database_url: SecretStr | None = None
    # No overflow by default: overflow connections close as soon as pool_size idle ones are
    # back, so under load a large overflow reconnects every few requests (bench/RESULTS.md).
    db_pool_size: int = Field(20, ge=1, le=1000)
    db_max_overflow: int = Field(0, ge=0, le=1000)
    db_pool_pre_ping: bool = True
    # With pre-ping on, only a connection idle in the pool for longer than this is pinged
    # with a round trip; every checkout gets the local "closed by the server?" check.
    db_pool_pre_ping_idle_seconds: float = Field(1.0, ge=0)
    db_pool_recycle_seconds: int = Field(3600, ge=-1)
    db_pool_timeout_seconds: float = Field(10.0, gt=0)
    db_statement_timeout_seconds: float = Field(10.0, gt=0)
    db_connect_timeout_seconds: float = Field(5.0, gt=0)
    db_startup_deadline_seconds: float = Field(30.0, ge=0)
    # Transaction-pooling PgBouncer cannot keep prepared statements across transactions.
    db_pgbouncer: bool = False
    # The same database reached without PgBouncer, for the one LISTEN session per process
    # (app/db/notifications.py): a transaction-pooling PgBouncer cannot carry LISTEN.
    # Unset: DATABASE_URL's (see listen_database).
    database_listen_url: SecretStr | None = None
    data_dir: Path = REPO_ROOT / ".data"

    # Logging
    log_level: LogLevel = "INFO"
    log_format: Literal["json", "console"] = "json"

    # Authentication
    jwt_secret: SecretStr | None = None
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    # Access tokens are short: a refresh renews them, and ending a session outlives none of them
    # by more than this (a fraction, such as 0.05, is allowed for tests).
    jwt_expire_minutes: float = Field(15, gt=0, le=60 * 24)
    jwt_issuer: str | None = None
    jwt_audience: str | None = None

    # Sessions (README "Authentication and sessions"): the absolute and the idle lifetime,
    # and how long a just-rotated refresh token still renews (concurrent tabs refreshing at once).
    session_lifetime_days: float = Field(30, gt=0, le=3650)
    session_idle_days: float = Field(7, gt=0, le=3650)
    refresh_reuse_grace_seconds: float = Field(30, ge=0, le=600)
    # The refresh cookie: Strict when the SPA is served from the API's site, None (with
    # Secure) when it is on another site. Secure off only for plain-HTTP development hosts
    # other than localhost, which browsers treat as secure already.
    refresh_cookie_samesite: Literal["strict", "lax", "none"] = "strict"
    refresh_cookie_secure: bool = True
    # Account exports running at once in one process: each holds a pooled connection for its
    # whole download, so a few slow readers must not take the pool (429 beyond).
    export_max_concurrent: int = Field(2, ge=1, le=100)

    # Safe writes (README "Retries and concurrent edits"): whether a write to an existing task
    # must name the version it changes (428 without If-Match), and how long an Idempotency-Key
    # and its stored response are kept, purged every purge interval by one replica at a time.
    require_if_match: bool = False
    idempotency_key_retention_hours: float = Field(24, gt=0, le=24 * 365)
    idempotency_purge_interval_seconds: float = Field(60, gt=0, le=86400)

    # The trash and the change feed (README "Sync"): how long a trashed task stays restorable,
    # how long the feed remembers a task deleted for good (an older cursor answers 410), and
    # how often one replica purges both.
    trash_retention_days: float = Field(30, gt=0, le=3650)
    changes_retention_days: float = Field(30, gt=0, le=3650)
    retention_purge_interval_seconds: float = Field(60, gt=0, le=86400)
    # Live updates (README "Live updates"): event streams one user may hold open on one worker
    # process (429 beyond), and how long a quiet stream waits before a heartbeat comment, which
    # keeps proxies from closing it.
    events_max_streams_per_user: int = Field(10, ge=1, le=1000)
    events_heartbeat_seconds: float = Field(15, gt=0, le=300)

    # Abuse limits for signup and login (the `limits` notation: "N/period"; auth/rate_limit.py).
    rate_limit_auth_per_address: str = "30/minute"
    rate_limit_login_failures_per_account_and_address: str = "5/15 minutes"
    # The threshold of the per-account delay, and the window over which failures count.
    rate_limit_login_failures_per_account: str = "10/15 minutes"
    # Where the limits count (auth/limit_storage.py): memory:// in each process, or a
    # redis://, rediss:// or unix:// URL that every worker and replica shares; and whether auth
    # requests are refused (closed: 503) or limited per process (open) while Redis fails.
    rate_limit_storage_url: SecretStr = SecretStr("memory://")
    rate_limit_when_unavailable: Literal["closed", "open"] = "closed"

    # Serving (the run command and the container image)
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    web_concurrency: int = Field(1, ge=1, le=64)
    forwarded_allow_ips: str = "127.0.0.1"
    shutdown_grace_seconds: int = Field(20, ge=0, le=600)
    # Enforced by the server's HTTP protocol before the app sees a request
    # (app/http/server_protocol.py): the request line and headers together, the request
    # target alone, and how long a head (or a new connection's first request) may take.
    max_request_head_bytes: int = Field(32 * 1024, ge=4 * 1024, le=1024 * 1024)
    max_request_target_bytes: int = Field(8 * 1024, ge=1024, le=1024 * 1024)
    request_head_timeout_seconds: float = Field(10.0, gt=0, le=600)

    # HTTP
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # What a cross-origin page may send, and read, besides the CORS-safelisted headers.
    cors_allow_headers: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [
            "Authorization",
            "Content-Type",
            "X-Request-ID",
            "traceparent",
            "tracestate",
            "If-Match",
            "If-None-Match",
            "Idempotency-Key",
            # Where a fetch-based event-stream reader resumes (not CORS-safelisted).
            "Last-Event-ID",
            # The cookie-authenticated refresh's CSRF guard: a cross-site form cannot send it.
            "X-Requested-With",
        ]
    )
    cors_expose_headers: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [
            "ETag",
            "Link",
            "Location",
            "Retry-After",
            "X-Request-ID",
            "WWW-Authenticate",
            "Idempotent-Replayed",
        ]
    )
    # /docs and /redoc (served from the app, no CDN), and /openapi.json they and client
    # generators read.
    docs_enabled: bool = True
    openapi_enabled: bool = True
    max_request_body_bytes: int = Field(64 * 1024, ge=1024)
    metrics_enabled: bool = True
    # Set: /metrics answers only `Authorization: Bearer <token>` (Prometheus's scrape config:
    # authorization.credentials).
    metrics_token: SecretStr | None = Field(None, min_length=16)
    # Set: requests whose Host is not listed (a name, or "*.example.com") get 400 `invalid_host`,
    # so the URLs built from it (Location, Link) name only this service. Unset: any host.
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("refresh_cookie_samesite", mode="before")
    @classmethod
    def _lower_samesite(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_log_format(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator(
        "rate_limit_auth_per_address",
        "rate_limit_login_failures_per_account_and_address",
        "rate_limit_login_failures_per_account",
    )
    @classmethod
    def _check_rate_limit(cls, value: str) -> str:
        try:
            limits.parse(value)
        except ValueError:
            raise ValueError("expected a limit such as '30/minute' or '5/15 minutes'") from None
        return value

    @field_validator("rate_limit_storage_url")
    @classmethod
    def _check_rate_limit_storage(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        scheme, separator, _ = url.partition("://")
        # The messages never repeat the URL, which may hold a password.
        if not separator or scheme not in ("memory", "redis", "rediss", "unix"):
            raise ValueError("expected memory:// or a redis://, rediss:// or unix:// URL")
        if scheme != "memory":
            try:
                redis_url(url)  # type: ignore[no-untyped-call]
            except ValueError:
                raise ValueError(
                    "not a valid Redis URL (redis://[:password@]host:port/db)"
                ) from None
        return value

    @field_validator("database_url", "database_listen_url")
    @classmethod
    def _check_database_url(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        try:
            target = parse_database_url(value.get_secret_value())
        except DatabaseUrlError as exc:
            raise ValueError(str(exc)) from None
        if info.field_name == "database_listen_url" and target.pgbouncer:
            raise ValueError("must point at PostgreSQL directly, not at PgBouncer")
        return value

    @field_validator(
        "cors_origins", "cors_allow_headers", "cors_expose_headers", "allowed_hosts", mode="before"
    )
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("cors_allow_headers", "cors_expose_headers")
    @classmethod
    def _header_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not HEADER_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a header name; list header names, no '*'")
        return value

    @field_validator("cors_origins")
    @classmethod
    def _no_wildcard_origin(cls, value: list[str]) -> list[str]:
        # Responses are one user's data: the sites allowed to read them are named, never all.
        if "*" in value:
            raise ValueError("'*' is not allowed; list the SPA's origins explicitly")
        # "null" is the origin of sandboxed frames and file: pages on any site: with the
        # refresh cookie's credentials mode it would let any of them read a login.
        if "null" in (origin.lower() for origin in value):
            raise ValueError("'null' is not allowed; list the SPA's origins explicitly")
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _host_patterns(cls, value: list[str]) -> list[str]:
        for host in value:
            name = host.removeprefix("*.")
            if not HOST_NAME.fullmatch(name) or "*" in name:
                raise ValueError(f"{host!r} is not a host name or '*.domain' pattern")
        return [host.lower() for host in value]

    @model_validator(mode="after")
    def _target_fits_in_the_head(self) -> Settings:
        if self.max_request_target_bytes >= self.max_request_head_bytes:
            raise ValueError(
                "MAX_REQUEST_TARGET_BYTES must be below MAX_REQUEST_HEAD_BYTES (the target is "
                "part of the head)"
            )
        return self

    @model_validator(mode="after")
    def _cross_site_cookie_needs_secure(self) -> Settings:
        if self.refresh_cookie_samesite == "none" and not self.refresh_cookie_secure:
            raise ValueError(
                "REFRESH_COOKIE_SAMESITE=none needs REFRESH_COOKIE_SECURE=true (browsers drop "
                "a SameSite=None cookie that is not Secure)"
            )
        return self

    @model_validator(mode="after")
    def _docs_need_the_schema(self) -> Settings:
        if self.docs_enabled and not self.openapi_enabled:
            raise ValueError("DOCS_ENABLED needs OPENAPI_ENABLED (the docs pages read the schema)")
        return self

    @model_validator(mode="after")
    def _listen_url_needs_a_database_url(self) -> Settings:
        if self.database_listen_url is not None and self.database_url is None:
            raise ValueError(
                "DATABASE_LISTEN_URL needs DATABASE_URL (it reaches the same database directly)"
            )
        return self

    @model_validator(mode="after")
    def _production_needs_a_real_secret(self) -> Settings:
        if self.database_url is None:
            return self
        secret = self.jwt_secret.get_secret_value() if self.jwt_secret else ""
        if len(secret.encode()) < MIN_JWT_SECRET_BYTES:
            raise ValueError(
                f"JWT_SECRET must be set to at least {MIN_JWT_SECRET_BYTES} bytes when "
                "DATABASE_URL is set (generate one with: python -c "
                "'import secrets; print(secrets.token_urlsafe(48))')"
            )
        return self

    @cached_property
    def database(self) -> DatabaseTarget:
        if self.database_url is None:
            raise RuntimeError("DATABASE_URL is not set; start the embedded database first")
        return parse_database_url(self.database_url.get_secret_value())

    @cached_property
    def listen_database(self) -> DatabaseTarget:
        """Where the notification listener connects: DATABASE_LISTEN_URL, else DATABASE_URL;
        never PgBouncer (DB_PGBOUNCER speaks of DATABASE_URL only).

        Checked when asked rather than when settings load, so what never listens (migrations,
        an engine for a script or a test through PgBouncer) needs no second URL.
        """
        if self.database_listen_url is None:
            target = self.database
        else:
            target = parse_database_url(self.database_listen_url.get_secret_value())
        if target.pgbouncer or (self.db_pgbouncer and target == self.database):
            raise SettingsError(LISTEN_NEEDS_POSTGRES)
        return target

    @property
    def uses_embedded_database(self) -> bool:
        return self.database_url is None


class SettingsError(Exception):
    """Settings could not be loaded; ``str()`` is one line, safe to print."""


def load_settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming each bad variable; never echoes the input (it may hold a password)."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        variable = "_".join(str(part) for part in error["loc"]).upper()
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{variable}: {message}" if variable else message)
    return "Invalid setting " + "; ".join(problems)
