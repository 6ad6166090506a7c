"""The statement timeout, directly and through a transaction-pooling PgBouncer.

A pooled endpoint refuses startup parameters, so there the timeout cannot travel in the
connection's startup packet; with ``DB_PGBOUNCER=true`` it is set per transaction
(``set_config(..., true)``, i.e. ``SET LOCAL``) and must cancel a slow statement just the same.
"""

from __future__ import annotations

import time
import uuid

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app.db.engine import create_engine
from tests.fixtures.app import make_settings
from tests.fixtures.cluster import (
    StartServer,
    app_sessions,
    asyncpg_dsn,
    create_database,
    http_client,
    install_slow_trigger,
    sign_up_over_http,
    titles_in_database,
    via,
)
from tests.fixtures.processes import PgBouncer, PostgresCluster

# Tens of seconds of real processes or waiting: scheduled first (see conftest.py).
pytestmark = pytest.mark.slow

STATEMENT_TIMEOUT_SECONDS = 1.0


@pytest.mark.parametrize("route", ["direct", "pgbouncer"])
async def test_statement_over_the_timeout_gives_503_and_leaves_a_clean_connection(
    route: str,
    request: pytest.FixtureRequest,
    pg_cluster: PostgresCluster,
    start_server: StartServer,
) -> None:
    database_url = await create_database(pg_cluster.url())
    env = {
        "DB_STATEMENT_TIMEOUT_SECONDS": str(STATEMENT_TIMEOUT_SECONDS),
        # One connection: the request after the timeout gets the very same one back.
        "DB_POOL_SIZE": "1",
        "DB_MAX_OVERFLOW": "0",
    }
    service_url = database_url
    if route == "pgbouncer":
        bouncer: PgBouncer = request.getfixturevalue("pgbouncer")
        service_url = via(bouncer, database_url)
        env["DB_PGBOUNCER"] = "true"
        # LISTEN needs a session of its own: PostgreSQL directly, not the pooler.
        env["DATABASE_LISTEN_URL"] = database_url
    server = start_server(service_url, env)
    await install_slow_trigger(database_url)
    slow_title = f"slow:10:{uuid.uuid4().hex}"

    async with http_client(server) as http:
        account = await sign_up_over_http(http)
        started = time.monotonic()
        response = await http.post(
            account.tasks_url, json={"title": slow_title}, headers=account.headers
        )
        elapsed = time.monotonic() - started
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "database_timeout"
        assert response.headers["Retry-After"].isdigit()
        # About the 1 s timeout (load on a CI runner allowed for), far from the 10 s insert.
        assert STATEMENT_TIMEOUT_SECONDS * 0.9 < elapsed < STATEMENT_TIMEOUT_SECONDS + 3

        next_title = f"after-timeout-{uuid.uuid4().hex}"
        created = await http.post(
            account.tasks_url, json={"title": next_title}, headers=account.headers
        )
        assert created.status_code == 201, created.text

    assert await titles_in_database(database_url, [slow_title, next_title]) == {next_title}
    states = [row["state"] for row in await app_sessions(database_url)]
    assert states == ["idle"]  # the one server connection: not stuck in a transaction


async def test_pooled_endpoint_gets_the_timeout_per_transaction_without_leaking_it(
    pg_cluster: PostgresCluster, pgbouncer: PgBouncer
) -> None:
    """What makes the test above pass: every transaction sets the timeouts locally, so they
    hold inside it and end with it, never reaching the next client of the server connection."""
    database_url = await create_database(pg_cluster.url())
    engine = create_engine(
        make_settings(
            via(pgbouncer, database_url),
            db_pgbouncer=True,
            db_statement_timeout_seconds=STATEMENT_TIMEOUT_SECONDS,
        )
    )
    try:
        async with engine.connect() as connection:
            inside = await connection.scalar(text("SHOW statement_timeout"))
            idle_timeout = await connection.scalar(text("SHOW idle_in_transaction_session_timeout"))
    finally:
        await engine.dispose()
    assert (inside, idle_timeout) == ("1s", "1min")

    # Another client of the same PgBouncer, outside any transaction: the server default.
    other = await asyncpg.connect(asyncpg_dsn(via(pgbouncer, database_url)), statement_cache_size=0)
    try:
        assert await other.fetchval("SHOW statement_timeout") == "0"
    finally:
        await other.close()


async def test_pooled_endpoint_refuses_startup_parameters(
    pg_cluster: PostgresCluster, pgbouncer: PgBouncer
) -> None:
    """Why the per-transaction setting exists: without pgbouncer mode the engine sends
    statement_timeout at startup and PgBouncer turns the connection away."""
    database_url = await create_database(pg_cluster.url())
    engine = create_engine(make_settings(via(pgbouncer, database_url)))
    try:
        with pytest.raises(DBAPIError, match="unsupported startup parameter") as caught:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
    finally:
        await engine.dispose()
    assert "statement_timeout" in str(caught.value)
