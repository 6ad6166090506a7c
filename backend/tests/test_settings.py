"""Settings: read from the environment and `.env`, validated at start, one clear line when not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.settings import Settings, SettingsError, load_settings

PASSWORD = "pw-Zx81q"
SECRET_32 = "k" * 32
TCP_URL = f"postgresql://app:{PASSWORD}@db.internal:5432/tasks"
BOUNCER_URL = f"postgresql://app:{PASSWORD}@bouncer.internal:6432/tasks"
DIRECT_URL = f"postgresql://app:{PASSWORD}@primary.internal:5432/tasks"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """An environment with none of the service's variables, in a folder without `.env`."""
    for name in list(os.environ):
        if name.lower() in Settings.model_fields:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def _error(env: pytest.MonkeyPatch, **variables: str) -> str:
    for name, value in variables.items():
        env.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_defaults_are_the_documented_ones(env: pytest.MonkeyPatch) -> None:
    settings = load_settings()

    assert settings.database_url is None
    assert settings.uses_embedded_database is True
    assert (
        settings.db_pool_size,
        settings.db_max_overflow,
        settings.db_pool_pre_ping,
        settings.db_pool_recycle_seconds,
        settings.db_pool_timeout_seconds,
        settings.db_statement_timeout_seconds,
    ) == (20, 0, True, 3600, 10.0, 10.0)
    assert (settings.log_level, settings.log_format) == ("INFO", "json")
    assert settings.cors_origins == []
    assert "traceparent" in settings.cors_allow_headers
    assert "WWW-Authenticate" in settings.cors_expose_headers
    assert (settings.docs_enabled, settings.openapi_enabled) == (True, True)
    assert (
        settings.max_request_head_bytes,
        settings.max_request_target_bytes,
        settings.request_head_timeout_seconds,
    ) == (32 * 1024, 8 * 1024, 10.0)
    assert settings.jwt_secret is None
    assert settings.database_listen_url is None
    assert settings.rate_limit_storage_url.get_secret_value() == "memory://"
    assert settings.rate_limit_when_unavailable == "closed"


def test_the_rate_limit_storage_is_memory_or_redis_and_never_echoed(
    env: pytest.MonkeyPatch,
) -> None:
    message = _error(env, RATE_LIMIT_STORAGE_URL="mysql://user:s3cret@db/0")
    assert "expected memory:// or a redis://" in message
    assert "s3cret" not in message
    assert "closed" in _error(
        env, RATE_LIMIT_STORAGE_URL="memory://", RATE_LIMIT_WHEN_UNAVAILABLE="ajar"
    )
    env.setenv("RATE_LIMIT_STORAGE_URL", "rediss://:pw@redis:6380/1")
    env.setenv("RATE_LIMIT_WHEN_UNAVAILABLE", "open")
    settings = load_settings()
    assert settings.rate_limit_storage_url.get_secret_value() == "rediss://:pw@redis:6380/1"
    assert "pw" not in repr(settings)


def test_variables_are_read_from_the_environment(env: pytest.MonkeyPatch) -> None:
    env.setenv("DATABASE_URL", TCP_URL)
    env.setenv("JWT_SECRET", SECRET_32)
    env.setenv("DB_POOL_SIZE", "7")
    env.setenv("DB_POOL_PRE_PING", "false")
    env.setenv("DB_STATEMENT_TIMEOUT_SECONDS", "2.5")

    settings = load_settings()

    assert settings.uses_embedded_database is False
    assert settings.database.url.drivername == "postgresql+asyncpg"
    assert (settings.db_pool_size, settings.db_pool_pre_ping) == (7, False)
    assert settings.db_statement_timeout_seconds == 2.5


def test_dotenv_is_read_and_the_environment_wins(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DB_POOL_SIZE=9\nDB_MAX_OVERFLOW=2\n")
    env.setenv("DB_MAX_OVERFLOW", "3")

    settings = load_settings()

    assert (settings.db_pool_size, settings.db_max_overflow) == (9, 3)


def test_an_empty_database_url_means_the_embedded_database(env: pytest.MonkeyPatch) -> None:
    env.setenv("DATABASE_URL", "  ")

    settings = load_settings()

    assert settings.uses_embedded_database is True
    with pytest.raises(RuntimeError, match="DATABASE_URL is not set"):
        _ = settings.database


def test_the_listener_uses_the_database_url_when_no_listen_url_is_set(
    env: pytest.MonkeyPatch,
) -> None:
    env.setenv("DATABASE_URL", TCP_URL)
    env.setenv("JWT_SECRET", SECRET_32)

    settings = load_settings()

    assert settings.listen_database == settings.database


@pytest.mark.parametrize(
    "variables",
    [
        pytest.param({"DATABASE_URL": BOUNCER_URL, "DB_PGBOUNCER": "true"}, id="db-pgbouncer"),
        pytest.param({"DATABASE_URL": f"{BOUNCER_URL}?pgbouncer=true"}, id="pgbouncer-in-url"),
        pytest.param(
            {
                "DATABASE_URL": BOUNCER_URL,
                "DB_PGBOUNCER": "true",
                "DATABASE_LISTEN_URL": BOUNCER_URL,
            },
            id="listen-url-is-the-bouncer",
        ),
    ],
)
def test_the_listener_never_goes_through_pgbouncer(
    env: pytest.MonkeyPatch, variables: dict[str, str]
) -> None:
    for name, value in {"JWT_SECRET": SECRET_32, **variables}.items():
        env.setenv(name, value)
    settings = load_settings()  # what never listens (migrations, scripts) still loads

    with pytest.raises(SettingsError) as caught:
        _ = settings.listen_database

    assert str(caught.value) == (
        "DATABASE_LISTEN_URL must point at PostgreSQL directly when DATABASE_URL goes through "
        "PgBouncer"
    )
    assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize("bouncer_url", [BOUNCER_URL, f"{BOUNCER_URL}?pgbouncer=true"])
def test_behind_pgbouncer_the_listener_uses_the_listen_url(
    env: pytest.MonkeyPatch, bouncer_url: str
) -> None:
    env.setenv("DATABASE_URL", bouncer_url)
    env.setenv("DB_PGBOUNCER", "true")
    env.setenv("DATABASE_LISTEN_URL", f"{DIRECT_URL}?sslmode=require&application_name=listen")
    env.setenv("JWT_SECRET", SECRET_32)

    settings = load_settings()
    target = settings.listen_database

    assert (target.url.host, target.url.port, target.url.database) == (
        "primary.internal",
        5432,
        "tasks",
    )
    assert (target.pgbouncer, target.ssl_mode, target.application_name) == (
        False,
        "require",
        "listen",
    )
    assert settings.database.url.host == "bouncer.internal"


def test_a_listen_url_through_pgbouncer_is_refused(env: pytest.MonkeyPatch) -> None:
    message = _error(
        env,
        DATABASE_URL=BOUNCER_URL,
        JWT_SECRET=SECRET_32,
        DATABASE_LISTEN_URL=f"{BOUNCER_URL}?pgbouncer=true",
    )

    assert message == (
        "Invalid setting DATABASE_LISTEN_URL: must point at PostgreSQL directly, not at PgBouncer"
    )


def test_a_listen_url_without_a_database_url_is_refused(env: pytest.MonkeyPatch) -> None:
    message = _error(env, DATABASE_LISTEN_URL=DIRECT_URL)

    assert message == (
        "Invalid setting DATABASE_LISTEN_URL needs DATABASE_URL (it reaches the same database "
        "directly)"
    )
    assert PASSWORD not in message


@pytest.mark.parametrize(
    ("given", "expected"),
    [("debug", "DEBUG"), ("Warning", "WARNING"), ("INFO", "INFO"), ("critical", "CRITICAL")],
)
def test_log_level_is_case_insensitive(env: pytest.MonkeyPatch, given: str, expected: str) -> None:
    env.setenv("LOG_LEVEL", given)

    assert load_settings().log_level == expected


def test_log_format_console_is_case_insensitive(env: pytest.MonkeyPatch) -> None:
    env.setenv("LOG_FORMAT", "Console")

    assert load_settings().log_format == "console"


def test_cors_origins_are_split_on_commas(env: pytest.MonkeyPatch) -> None:
    env.setenv("CORS_ORIGINS", " https://app.example.com, http://localhost:5173 ,, ")

    assert load_settings().cors_origins == ["https://app.example.com", "http://localhost:5173"]


@pytest.mark.parametrize("origins", ["*", "https://app.example.com,*"])
def test_cors_wildcard_is_refused(env: pytest.MonkeyPatch, origins: str) -> None:
    message = _error(env, CORS_ORIGINS=origins)

    assert message == (
        "Invalid setting CORS_ORIGINS: '*' is not allowed; list the SPA's origins explicitly"
    )


@pytest.mark.parametrize("origins", ["null", "https://app.example.com,NULL"])
def test_cors_null_origin_is_refused(env: pytest.MonkeyPatch, origins: str) -> None:
    """Sandboxed frames on any site send Origin: null; the login's credentials mode must not
    answer them."""
    message = _error(env, CORS_ORIGINS=origins)

    assert message == (
        "Invalid setting CORS_ORIGINS: 'null' is not allowed; list the SPA's origins explicitly"
    )


def test_cors_header_lists_are_split_on_commas(env: pytest.MonkeyPatch) -> None:
    env.setenv("CORS_ALLOW_HEADERS", "Authorization, X-Trace ,")
    env.setenv("CORS_EXPOSE_HEADERS", "ETag")

    settings = load_settings()

    assert settings.cors_allow_headers == ["Authorization", "X-Trace"]
    assert settings.cors_expose_headers == ["ETag"]


@pytest.mark.parametrize("value", ["*", "X-Ok,Bad Header", "X-Ok,a:b"])
def test_cors_header_lists_take_header_names_only(env: pytest.MonkeyPatch, value: str) -> None:
    message = _error(env, CORS_EXPOSE_HEADERS=value)

    assert message.startswith("Invalid setting CORS_EXPOSE_HEADERS: ")
    assert "is not a header name" in message


def test_allowed_hosts_are_split_and_lower_cased(env: pytest.MonkeyPatch) -> None:
    env.setenv("ALLOWED_HOSTS", "API.example.com, *.Internal,[::1]")

    assert load_settings().allowed_hosts == ["api.example.com", "*.internal", "[::1]"]


@pytest.mark.parametrize("value", ["*", "api.example.com:443", "*.*.example.com", "a b"])
def test_allowed_hosts_take_names_or_subdomain_patterns_only(
    env: pytest.MonkeyPatch, value: str
) -> None:
    message = _error(env, ALLOWED_HOSTS=value)

    assert message.startswith("Invalid setting ALLOWED_HOSTS: ")
    assert "is not a host name" in message


def test_a_short_metrics_token_is_refused(env: pytest.MonkeyPatch) -> None:
    message = _error(env, METRICS_TOKEN="short")

    assert message.startswith("Invalid setting METRICS_TOKEN: ")
    assert "short" not in message.removeprefix("Invalid setting METRICS_TOKEN: ")


def test_docs_without_the_schema_are_refused(env: pytest.MonkeyPatch) -> None:
    message = _error(env, OPENAPI_ENABLED="false")

    assert message == (
        "Invalid setting DOCS_ENABLED needs OPENAPI_ENABLED (the docs pages read the schema)"
    )


def test_a_request_target_limit_not_below_the_head_limit_is_refused(
    env: pytest.MonkeyPatch,
) -> None:
    message = _error(env, MAX_REQUEST_HEAD_BYTES="16384", MAX_REQUEST_TARGET_BYTES="16384")

    assert message.startswith(
        "Invalid setting MAX_REQUEST_TARGET_BYTES must be below MAX_REQUEST_HEAD_BYTES"
    )


def test_jwt_secret_is_required_with_a_database_url(env: pytest.MonkeyPatch) -> None:
    message = _error(env, DATABASE_URL=TCP_URL)

    assert message.startswith("Invalid setting JWT_SECRET must be set to at least 32 bytes")
    assert PASSWORD not in message


def test_jwt_secret_shorter_than_32_bytes_is_refused(env: pytest.MonkeyPatch) -> None:
    message = _error(env, DATABASE_URL=TCP_URL, JWT_SECRET="k" * 31)

    assert "JWT_SECRET must be set to at least 32 bytes" in message


@pytest.mark.parametrize("secret", [SECRET_32, "é" * 16], ids=["32-ascii", "16-two-byte-chars"])
def test_jwt_secret_of_32_bytes_is_accepted(env: pytest.MonkeyPatch, secret: str) -> None:
    env.setenv("DATABASE_URL", TCP_URL)
    env.setenv("JWT_SECRET", secret)

    settings = load_settings()

    assert settings.jwt_secret is not None
    assert settings.jwt_secret.get_secret_value() == secret


def test_jwt_secret_is_optional_for_the_embedded_database(env: pytest.MonkeyPatch) -> None:
    assert load_settings().jwt_secret is None


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        pytest.param(
            {"DATABASE_URL": f"mysql://app:{PASSWORD}@db/tasks"},
            "Invalid setting DATABASE_URL: unsupported scheme 'mysql'; use postgresql:// "
            "(or postgres://, postgresql+asyncpg://)",
            id="bad-url-scheme",
        ),
        pytest.param(
            {"DATABASE_URL": f"postgresql://app:{PASSWORD}@db/tasks?sslmode=maybe"},
            "Invalid setting DATABASE_URL: sslmode 'maybe' is not one of disable, allow, "
            "prefer, require, verify-ca, verify-full",
            id="bad-sslmode",
        ),
        pytest.param(
            {
                "DATABASE_URL": TCP_URL,
                "JWT_SECRET": SECRET_32,
                "DATABASE_LISTEN_URL": f"postgresql://app:{PASSWORD}@db/tasks?sslmode=maybe",
            },
            "Invalid setting DATABASE_LISTEN_URL: sslmode 'maybe' is not one of disable, allow, "
            "prefer, require, verify-ca, verify-full",
            id="bad-listen-url",
        ),
        pytest.param(
            {"DB_POOL_SIZE": "five"},
            "Invalid setting DB_POOL_SIZE: Input should be a valid integer, unable to parse "
            "string as an integer",
            id="non-numeric-pool-size",
        ),
        pytest.param(
            {"DB_POOL_SIZE": "0"},
            "Invalid setting DB_POOL_SIZE: Input should be greater than or equal to 1",
            id="zero-pool-size",
        ),
        pytest.param(
            {"LOG_LEVEL": "verbose"},
            "Invalid setting LOG_LEVEL: Input should be 'DEBUG', 'INFO', 'WARNING', 'ERROR' "
            "or 'CRITICAL'",
            id="unknown-log-level",
        ),
        pytest.param(
            {"LOG_FORMAT": "xml"},
            "Invalid setting LOG_FORMAT: Input should be 'json' or 'console'",
            id="unknown-log-format",
        ),
        pytest.param(
            {"RATE_LIMIT_AUTH_PER_ADDRESS": "lots"},
            "Invalid setting RATE_LIMIT_AUTH_PER_ADDRESS: expected a limit such as "
            "'30/minute' or '5/15 minutes'",
            id="bad-rate-limit",
        ),
        pytest.param(
            {"RATE_LIMIT_LOGIN_FAILURES_PER_ACCOUNT_AND_ADDRESS": "5 per fortnight"},
            "Invalid setting RATE_LIMIT_LOGIN_FAILURES_PER_ACCOUNT_AND_ADDRESS: expected a limit "
            "such as '30/minute' or '5/15 minutes'",
            id="bad-login-rate-limit",
        ),
    ],
)
def test_an_invalid_setting_is_one_line_naming_the_variable(
    env: pytest.MonkeyPatch, variables: dict[str, str], expected: str
) -> None:
    message = _error(env, **variables)

    assert message == expected
    assert PASSWORD not in message


def test_every_invalid_variable_is_named_on_the_one_line(env: pytest.MonkeyPatch) -> None:
    message = _error(env, DB_POOL_SIZE="five", LOG_LEVEL="verbose")

    assert message.startswith("Invalid setting DB_POOL_SIZE: ")
    assert "; LOG_LEVEL: " in message
