"""``sslmode`` in DATABASE_URL means what libpq users expect, against a real TLS server.

The server gets a certificate for ``localhost`` signed by a throwaway CA (made with the
``openssl`` command). Connections go through the app's own engine factory, and
``pg_stat_ssl`` on the server says whether each one is encrypted.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from structlog.testing import capture_logs

from app.db.database import Database
from app.db.engine import create_engine
from app.db.errors import DatabaseStartupError
from app.settings import Settings
from tests.fixtures.app import make_settings
from tests.fixtures.processes import (
    COMMAND_TIMEOUT_SECONDS,
    PostgresCluster,
    postgres_bin_with_ssl,
    running_cluster,
)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(
        ["openssl", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
    )


def make_certificates(folder: Path) -> None:
    """ca.crt (self-signed CA) and server.crt/server.key for DNS name ``localhost`` only."""
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=taskapi reliability test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=folder,
    )  # fmt: skip
    _openssl(
        "req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost",
        cwd=folder,
    )  # fmt: skip
    (folder / "server.ext").write_text(
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n"
    )
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "server.ext",
        cwd=folder,
    )  # fmt: skip


@pytest.fixture(scope="module")
def tls_cluster() -> Iterator[PostgresCluster]:
    bin_dir = postgres_bin_with_ssl()
    if bin_dir is None:
        pytest.skip("no PostgreSQL built with OpenSSL (install postgresql)")
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    settings = {
        "ssl": "on",
        "ssl_cert_file": "'server.crt'",
        "ssl_key_file": "'server.key'",
    }
    hba = (
        "hostssl all all 127.0.0.1/32 trust",
        "hostnossl all all 127.0.0.1/32 trust",
    )
    with running_cluster(
        bin_dir, settings=settings, hba=hba, before_start=_install_certificates
    ) as cluster:
        yield cluster


def _install_certificates(cluster: PostgresCluster) -> None:
    make_certificates(cluster.root)
    for name in ("server.crt", "server.key"):
        target = cluster.data_dir / name
        shutil.copy(cluster.root / name, target)
        target.chmod(0o600)
        if cluster.os_user is not None:
            shutil.chown(target, cluster.os_user, cluster.os_user)


def tls_url(cluster: PostgresCluster, host: str, **query: str) -> str:
    return cluster.url(**query).replace("@127.0.0.1:", f"@{host}:")


def ca_file(cluster: PostgresCluster) -> str:
    return str(cluster.root / "ca.crt")


async def connection_is_encrypted(settings: Settings) -> bool:
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            encrypted: bool = await connection.scalar(
                text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            )
    finally:
        await engine.dispose()
    return encrypted


@pytest.mark.parametrize(
    ("host", "query", "encrypted"),
    [
        pytest.param("127.0.0.1", {"sslmode": "require"}, True, id="require"),
        pytest.param("127.0.0.1", {"sslmode": "prefer"}, True, id="prefer"),
        pytest.param("127.0.0.1", {"sslmode": "disable"}, False, id="disable"),
        pytest.param(
            "localhost", {"sslmode": "verify-full", "sslrootcert": "CA"}, True, id="verify-full"
        ),
        pytest.param(
            "127.0.0.1", {"sslmode": "verify-ca", "sslrootcert": "CA"}, True, id="verify-ca"
        ),
    ],
)
async def test_sslmode_connects_with_the_encryption_it_names(
    tls_cluster: PostgresCluster, host: str, query: dict[str, str], encrypted: bool
) -> None:
    query = {key: ca_file(tls_cluster) if value == "CA" else value for key, value in query.items()}
    settings = make_settings(tls_url(tls_cluster, host, **query))
    assert await connection_is_encrypted(settings) is encrypted


@pytest.mark.parametrize(
    ("host", "query", "reason"),
    [
        # The system CAs do not know the test CA.
        pytest.param(
            "localhost", {"sslmode": "verify-full"}, "unable to get local issuer", id="untrusted-ca"
        ),
        # Trusted CA, but the certificate is for localhost, not 127.0.0.1.
        pytest.param(
            "127.0.0.1",
            {"sslmode": "verify-full", "sslrootcert": "CA"},
            "IP address mismatch",
            id="wrong-hostname",
        ),
    ],
)
async def test_verify_full_refuses_a_certificate_it_cannot_verify(
    tls_cluster: PostgresCluster, host: str, query: dict[str, str], reason: str
) -> None:
    query = {key: ca_file(tls_cluster) if value == "CA" else value for key, value in query.items()}
    settings = make_settings(tls_url(tls_cluster, host, **query))
    with pytest.raises(ssl.SSLCertVerificationError, match=reason):
        await connection_is_encrypted(settings)


async def test_unverifiable_certificate_stops_startup_at_once(
    tls_cluster: PostgresCluster,
) -> None:
    """A certificate that fails verification will not pass on a retry: startup gives up on the
    first attempt and says why, instead of waiting out the startup deadline."""
    settings = make_settings(
        tls_url(tls_cluster, "localhost", sslmode="verify-full"), db_startup_deadline_seconds=60
    )
    database = Database.from_settings(settings)
    try:
        with pytest.raises(DatabaseStartupError, match="rejected the connection") as caught:
            await database.wait_until_ready(settings.db_startup_deadline_seconds)
    finally:
        await database.dispose()
    assert "SSLCertVerificationError: unable to get local issuer certificate" in str(caught.value)


async def test_channel_binding_is_accepted_and_ignored_with_a_warning(
    tls_cluster: PostgresCluster,
) -> None:
    settings = make_settings(
        tls_url(tls_cluster, "127.0.0.1", sslmode="require", channel_binding="require")
    )
    with capture_logs() as logs:
        assert await connection_is_encrypted(settings) is True
    warnings = [log for log in logs if log["event"] == "database_url_warning"]
    assert len(warnings) == 1
    assert "channel_binding" in warnings[0]["detail"]
    assert warnings[0]["log_level"] == "warning"
