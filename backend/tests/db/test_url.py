"""DATABASE_URL as people paste it, turned into an asyncpg URL plus connect arguments."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg

from app.db.url import DatabaseUrlError, parse_database_url

PASSWORD = "pw-Zx81q"


@pytest.mark.parametrize(
    ("raw", "expected_url", "ssl_mode"),
    [
        pytest.param(
            f"postgres://app:{PASSWORD}@db.internal:5433/tasks",
            f"postgresql+asyncpg://app:{PASSWORD}@db.internal:5433/tasks",
            None,
            id="postgres-scheme",
        ),
        pytest.param(
            f"postgresql://app:{PASSWORD}@db.internal/tasks",
            f"postgresql+asyncpg://app:{PASSWORD}@db.internal/tasks",
            None,
            id="postgresql-scheme",
        ),
        pytest.param(
            f"postgresql+asyncpg://app:{PASSWORD}@db.internal/tasks",
            f"postgresql+asyncpg://app:{PASSWORD}@db.internal/tasks",
            None,
            id="asyncpg-scheme",
        ),
        pytest.param(
            f"  postgresql://app:{PASSWORD}@db.internal/tasks\n",
            f"postgresql+asyncpg://app:{PASSWORD}@db.internal/tasks",
            None,
            id="surrounding-whitespace",
        ),
        pytest.param(
            f"postgresql://app:{PASSWORD}@ep-quiet-1.eu-central-1.aws.neon.tech/neondb"
            "?sslmode=require&channel_binding=require",
            f"postgresql+asyncpg://app:{PASSWORD}@ep-quiet-1.eu-central-1.aws.neon.tech/neondb",
            "require",
            id="hosted-provider",
        ),
        pytest.param(
            "postgresql://app@/tasks?host=/var/run/postgresql",
            "postgresql+asyncpg://app@/tasks?host=%2Fvar%2Frun%2Fpostgresql",
            None,
            id="unix-socket-host-passes-through",
        ),
        pytest.param(
            "postgres://app@db/tasks?sslmode=verify-full&target_session_attrs=read-write",
            "postgresql+asyncpg://app@db/tasks?target_session_attrs=read-write",
            "verify-full",
            id="libpq-parameter-removed-asyncpg-parameter-kept",
        ),
    ],
)
def test_accepted_urls_are_normalised_to_asyncpg(
    raw: str, expected_url: str, ssl_mode: str | None
) -> None:
    target = parse_database_url(raw)

    assert target.url.render_as_string(hide_password=False) == expected_url
    assert target.ssl_mode == ssl_mode


def test_channel_binding_is_accepted_with_a_warning() -> None:
    target = parse_database_url("postgresql://u:p@h/db?sslmode=require&channel_binding=require")

    [warning] = target.warnings
    assert "channel_binding" in warning


def test_channel_binding_disable_needs_no_warning() -> None:
    assert parse_database_url("postgresql://u:p@h/db?channel_binding=disable").warnings == ()


def test_the_same_sslmode_twice_is_accepted() -> None:
    target = parse_database_url("postgresql://u@h/db?sslmode=require&sslmode=require")

    assert target.ssl_mode == "require"


def test_driver_parameters_are_read_from_the_query() -> None:
    target = parse_database_url(
        "postgresql://u@h/db?application_name=worker&pgbouncer=true&connect_timeout=3"
    )

    assert (target.application_name, target.pgbouncer, target.connect_timeout) == (
        "worker",
        True,
        3.0,
    )
    assert dict(target.url.query) == {}


def test_display_hides_the_password() -> None:
    target = parse_database_url(f"postgres://app:{PASSWORD}@db.internal:5433/tasks")

    assert target.display == "postgresql+asyncpg://app:***@db.internal:5433/tasks"
    assert target.host_label == "host db.internal:5433"
    assert target.database == "tasks"


def test_a_url_without_database_means_postgres() -> None:
    assert parse_database_url("postgresql://u@h").database == "postgres"


def _asyncpg_keywords(raw: str) -> dict[str, object]:
    """What the engine's dialect hands ``asyncpg.connect`` for ``raw``."""
    _, keywords = PGDialect_asyncpg().create_connect_args(parse_database_url(raw).url)  # type: ignore[no-untyped-call]
    return dict(keywords)


def test_a_host_list_reaches_asyncpg_as_hosts_and_ports_for_failover() -> None:
    raw = f"postgresql://app:{PASSWORD}@db1:5433,db2:5434/tasks?target_session_attrs=read-write"
    target = parse_database_url(raw)

    assert _asyncpg_keywords(raw) == {
        "host": ["db1", "db2"],
        "port": [5433, 5434],
        "user": "app",
        "password": PASSWORD,
        "database": "tasks",
        "target_session_attrs": "read-write",
    }
    assert target.host_label == "hosts db1:5433, db2:5434"
    assert target.database == "tasks"
    assert PASSWORD not in target.display


def test_host_list_entries_may_leave_out_the_port_or_be_ipv6() -> None:
    raw = "postgresql://app@db1,[::1]:5433/tasks?sslmode=require"
    target = parse_database_url(raw)

    keywords = _asyncpg_keywords(raw)
    assert (keywords["host"], keywords["port"]) == (["db1", "::1"], [5432, 5433])
    assert target.host_label == "hosts db1:5432, [::1]:5433"
    assert target.ssl_mode == "require"


def test_a_comma_in_the_password_is_not_a_host_list() -> None:
    keywords = _asyncpg_keywords("postgresql://app:pass,word@db:5433/tasks")

    assert (keywords["host"], keywords["port"], keywords["password"]) == (
        "db",
        5433,
        "pass,word",
    )


def _require_context(mode: str, root_cert: str | None = None) -> ssl.SSLContext:
    query = f"sslmode={mode}" + (f"&sslrootcert={root_cert}" if root_cert else "")
    argument = parse_database_url(f"postgresql://u@h/db?{query}").ssl_argument()
    assert isinstance(argument, ssl.SSLContext)
    return argument


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", None),
        ("?sslmode=disable", False),
        ("?sslmode=allow", "allow"),
        ("?sslmode=prefer", "prefer"),
    ],
)
def test_sslmode_without_certificate_checks_maps_to_asyncpg_values(
    query: str, expected: object
) -> None:
    assert parse_database_url(f"postgresql://u@h/db{query}").ssl_argument() == expected


def test_sslmode_require_encrypts_without_verifying() -> None:
    context = _require_context("require")

    assert context.verify_mode == ssl.CERT_NONE
    assert context.check_hostname is False


def test_sslmode_verify_ca_verifies_the_certificate_but_not_the_host() -> None:
    context = _require_context("verify-ca")

    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is False


def test_sslmode_verify_full_verifies_certificate_and_host() -> None:
    context = _require_context("verify-full")

    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True


def test_sslrootcert_system_means_the_system_store() -> None:
    target = parse_database_url("postgresql://u@h/db?sslmode=verify-full&sslrootcert=system")

    assert target.ssl_root_cert is None


@pytest.fixture
def root_cert(tmp_path: Path) -> str:
    """A self-signed CA certificate file."""
    path = tmp_path / "root.crt"
    try:
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=test-ca",
                "-keyout",
                str(tmp_path / "root.key"),
                "-out",
                str(path),
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
    except FileNotFoundError:
        pytest.skip("openssl is not installed")
    return str(path)


def test_sslmode_require_with_a_root_certificate_verifies_like_verify_ca(root_cert: str) -> None:
    context = _require_context("require", root_cert)

    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is False
    assert [cert["subject"] for cert in context.get_ca_certs()] == [((("commonName", "test-ca"),),)]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param(
            f"mysql://app:{PASSWORD}@db/tasks", "unsupported scheme 'mysql'", id="other-database"
        ),
        pytest.param(
            f"postgresql+psycopg://app:{PASSWORD}@db/tasks",
            "unsupported scheme 'postgresql+psycopg'",
            id="other-driver",
        ),
        pytest.param(f"app:{PASSWORD}@db/tasks", "not a valid URL", id="no-scheme"),
        pytest.param(
            f"postgresql://app:{PASSWORD}@db/tasks?sslmode=require&foo=1&bar=2",
            "unsupported query parameter(s): bar, foo",
            id="unknown-parameter",
        ),
        pytest.param(
            f"postgresql://app:{PASSWORD}@db/tasks?sslmode=require&sslmode=disable",
            "query parameter 'sslmode' is given more than once",
            id="conflicting-sslmode",
        ),
        pytest.param(
            f"postgresql://app:{PASSWORD}@db/tasks?sslmode=sometimes",
            "sslmode 'sometimes' is not one of disable, allow, prefer, require, verify-ca, "
            "verify-full",
            id="bad-sslmode",
        ),
        pytest.param(
            f"postgresql://app:{PASSWORD}@db/tasks?connect_timeout=soon",
            "connect_timeout must be a number of seconds",
            id="bad-connect-timeout",
        ),
        pytest.param(
            # Unencoded '@' in the password: the rest of the password would become the host.
            f"postgresql://app:{PASSWORD}@part2@db/tasks",
            "the host contains '@'",
            id="unencoded-at-sign",
        ),
        pytest.param(
            f"postgresql://app:{PASSWORD}@part2@db1,db2/tasks",
            "the host contains '@'",
            id="unencoded-at-sign-before-a-host-list",
        ),
        pytest.param(
            f"postgresql://app:{PASSWORD}@db1,,db2/tasks",
            "the host list has an empty host",
            id="empty-host-in-list",
        ),
        pytest.param(
            f"postgresql://app:{PASSWORD}@db1:5432,db2:next/tasks",
            "the port of host db2 is not a number",
            id="bad-port-in-list",
        ),
        pytest.param(
            f"postgresql://app:{PASSWORD}@db1,db2/tasks?port=5433",
            "a host list cannot be combined with ?host= or ?port=",
            id="host-list-and-port-parameter",
        ),
        pytest.param(
            f"postgresql://app:{PASSWORD}@db/tasks?sslmode=verify-full&sslrootcert=/no/such.pem",
            "sslrootcert file not found: /no/such.pem",
            id="missing-root-certificate",
        ),
    ],
)
def test_unusable_urls_are_refused_without_echoing_the_password(raw: str, message: str) -> None:
    with pytest.raises(DatabaseUrlError) as caught:
        parse_database_url(raw)

    assert str(caught.value).startswith(message)
    assert PASSWORD not in str(caught.value)
