"""PgBouncer in transaction mode, as hosted pooled endpoints run it.

With ``DB_PGBOUNCER=true`` two workers serve a mixed load through it with no prepared-statement
error; the same load without that mode is shown to break, so the setting is what makes the
difference (not luck with the pool).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.fixtures.accounts import Account
from tests.fixtures.cluster import (
    StartServer,
    create_database,
    fetch,
    http_client,
    pgbouncer_binary,
    sign_up_over_http,
    via,
)
from tests.fixtures.processes import AppServer, PgBouncer, PostgresCluster

# Tens of seconds of real processes or waiting: scheduled first (see conftest.py).
pytestmark = pytest.mark.slow

CHAINS = 100  # x 5 requests
CONCURRENT_CHAINS = 16
EXPECTED = ("create", 201), ("get", 200), ("toggle", 200), ("list", 200), ("delete", 204)
PREPARED_STATEMENT_ERROR = re.compile(r"prepared statement", re.IGNORECASE)
LISTENER_APPLICATION_NAME = "taskapi-listener"


async def _chain(http: httpx.AsyncClient, account: Account, n: int) -> list[tuple[str, int]]:
    """create -> get -> toggle -> list -> delete on one task; (operation, status) each."""
    headers, url = account.headers, account.tasks_url
    created = await http.post(url, json={"title": f"bounced-{n}"}, headers=headers)
    results = [("create", created.status_code)]
    if created.status_code != 201:
        return results
    task_url = f"{url}/{created.json()['id']}"
    results.append(("get", (await http.get(task_url, headers=headers)).status_code))
    toggled = await http.patch(f"{task_url}/complete", headers=headers)
    results.append(("toggle", toggled.status_code))
    listed = await http.get(url, headers=headers, params={"limit": 5})
    results.append(("list", listed.status_code))
    results.append(("delete", (await http.delete(task_url, headers=headers)).status_code))
    return results


async def run_mixed_load(server: AppServer) -> list[tuple[str, int]]:
    """Sign up once, then 500 requests from 16 concurrent clients."""
    async with http_client(server) as http:
        account = await sign_up_over_http(http)
        gate = asyncio.Semaphore(CONCURRENT_CHAINS)

        async def bounded(n: int) -> list[tuple[str, int]]:
            async with gate:
                return await _chain(http, account, n)

        chains = await asyncio.gather(*(bounded(n) for n in range(CHAINS)))
    return [result for chain in chains for result in chain]


def service_env(*, workers: int, pgbouncer_mode: bool, direct_url: str) -> dict[str, str]:
    """``direct_url`` is the database on PostgreSQL itself, for the LISTEN session that
    PgBouncer cannot carry, under a name of its own so it can be told from the pool's."""
    listen_url = make_url(direct_url).update_query_dict(
        {"application_name": LISTENER_APPLICATION_NAME}
    )
    return {
        "WEB_CONCURRENCY": str(workers),
        "DB_PGBOUNCER": "true" if pgbouncer_mode else "false",
        "DB_POOL_SIZE": "5",
        "DB_MAX_OVERFLOW": "5",
        "DATABASE_LISTEN_URL": listen_url.render_as_string(hide_password=False),
    }


async def test_two_workers_through_transaction_pooling_have_no_prepared_statement_errors(
    pg_cluster: PostgresCluster, pgbouncer: PgBouncer, start_server: StartServer
) -> None:
    database_url = await create_database(pg_cluster.url())
    server = start_server(
        via(pgbouncer, database_url),
        service_env(workers=2, pgbouncer_mode=True, direct_url=database_url),
    )
    results = await run_mixed_load(server)

    assert len(results) == CHAINS * len(EXPECTED)
    assert results == list(EXPECTED) * CHAINS
    log = server.log_text()
    assert log.count("Started server process") == 2  # two worker processes
    assert PREPARED_STATEMENT_ERROR.findall(log) == []
    # Up to 16 concurrent requests from two workers went through at most pool_size server
    # connections: transactions really were handed between clients. (The LISTEN sessions
    # connect directly, one per worker, and are not PgBouncer's.)
    server_connections = await fetch(
        database_url,
        "SELECT count(*) AS n FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND application_name IS DISTINCT FROM $1",
        LISTENER_APPLICATION_NAME,
    )
    assert 1 <= server_connections[0]["n"] <= pgbouncer.pool_size


@pytest.fixture(scope="module")
def lenient_pgbouncer(pg_cluster: PostgresCluster) -> Iterator[PgBouncer]:
    """A PgBouncer that lets the app's startup parameters through, so the app starts without
    pgbouncer mode and the prepared statements are what fails."""
    binary = pgbouncer_binary()
    if binary is None:
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)")
    bouncer = PgBouncer(
        binary=binary,
        upstream_port=pg_cluster.port,
        root=pg_cluster.root,
        ignore_startup_parameters=("statement_timeout", "idle_in_transaction_session_timeout"),
    )
    try:
        bouncer.start()
        yield bouncer
    finally:
        bouncer.stop()


async def test_without_pgbouncer_mode_the_same_load_hits_prepared_statement_errors(
    pg_cluster: PostgresCluster, lenient_pgbouncer: PgBouncer, start_server: StartServer
) -> None:
    """One worker here: with two, the workers' first statements (both named
    ``__asyncpg_stmt_1__``) may meet on one server connection and stop the server from even
    starting, which proves the same point less predictably."""
    database_url = await create_database(pg_cluster.url())
    server = start_server(
        via(lenient_pgbouncer, database_url),
        service_env(workers=1, pgbouncer_mode=False, direct_url=database_url),
    )
    results = await run_mixed_load(server)

    errors = PREPARED_STATEMENT_ERROR.findall(server.log_text())
    failed = [status for _, status in results if status >= 500]
    print(
        f"\nwithout DB_PGBOUNCER: {len(failed)} of {len(results)} requests failed, "
        f"{len(errors)} prepared-statement errors logged"
    )
    assert errors
    assert failed
