"""A database that refuses writes (a standby reached without target_session_attrs, or a primary
being demoted in a switchover): every write is a 503 to retry, never a 500, and the pool's
sessions are replaced, so writes resume as soon as the server accepts them again.

The scratch database is made read-only for new sessions (ALTER DATABASE ... SET
default_transaction_read_only), and the app's sessions are ended so that they reconnect into it,
as a demoted primary's clients would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import exc, text
from sqlalchemy.engine import make_url

from app.db.database import Database
from app.db.engine import create_engine
from app.db.errors import DatabaseUnavailableError, translate_database_error
from app.main import create_app
from tests.fixtures.accounts import Account, sign_up_via
from tests.fixtures.app import make_settings
from tests.fixtures.database import admin_execute, migrated_database

READ_ONLY_DETAIL = "The database is read-only at the moment; retry shortly"


@pytest.fixture
async def scratch_url(server_url: str) -> AsyncIterator[str]:
    async with migrated_database(server_url, "taskapi_read_only") as url:
        yield url


async def _set_read_only(server_url: str, url: str, read_only: bool) -> None:
    """Make new sessions of the database read-only (or writable) and end the ones open now."""
    database = make_url(url).database
    change = "SET default_transaction_read_only = on" if read_only else "RESET ALL"
    await admin_execute(server_url, f'ALTER DATABASE "{database}" {change}')
    if read_only:
        await admin_execute(
            server_url,
            # The scratch database's own generated name, not input.
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"  # noqa: S608
            f" WHERE datname = '{database}' AND pid <> pg_backend_pid()",
        )


async def _create(http: httpx.AsyncClient, account: Account, title: str) -> httpx.Response:
    return await http.post(account.tasks_url, json={"title": title}, headers=account.headers)


async def test_writes_to_a_read_only_database_are_503s_and_resume_when_it_is_writable(
    server_url: str, scratch_url: str
) -> None:
    app = create_app(make_settings(scratch_url))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            account = await sign_up_via(http)
            assert (await _create(http, account, "before")).status_code == 201

            await _set_read_only(server_url, scratch_url, read_only=True)
            refused = [await _create(http, account, f"refused {n}") for n in range(5)]
            await _set_read_only(server_url, scratch_url, read_only=False)
            # The pool holds no read-only session any more: the very next write goes through.
            after = await _create(http, account, "after")

    # The first attempts may meet the ended sessions (a plain 503); none is a 500.
    assert {answer.status_code for answer in refused} == {503}
    assert all("Retry-After" in answer.headers for answer in refused)
    assert refused[-1].json() == {"detail": READ_ONLY_DETAIL, "code": "database_unavailable"}
    assert after.status_code == 201, after.text


async def test_the_engine_discards_a_session_that_refused_a_write(
    server_url: str, scratch_url: str
) -> None:
    engine = create_engine(make_settings(scratch_url))
    try:
        await _set_read_only(server_url, scratch_url, read_only=True)
        with pytest.raises(exc.DBAPIError) as refused:
            async with engine.begin() as connection:
                await connection.execute(text("CREATE TABLE refused (id int)"))
        await _set_read_only(server_url, scratch_url, read_only=False)
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE accepted (id int)"))
    finally:
        await engine.dispose()

    assert refused.value.connection_invalidated
    translated = translate_database_error(refused.value)
    assert isinstance(translated, DatabaseUnavailableError)
    assert translated.detail == READ_ONLY_DETAIL


async def test_after_a_read_only_error_no_pooled_session_is_used_again(database_url: str) -> None:
    """The sessions idle in the pool when a write is refused as read-only were opened on what
    may no longer be the primary: each is replaced at its next checkout, not used again."""
    database = Database.from_settings(make_settings(database_url, db_pool_size=3))

    async def backend_pids() -> set[int]:
        async def one(started: asyncio.Barrier) -> int:
            async with database.transaction() as tx:
                await started.wait()  # three connections at once
                pid: int = await tx.connection.fetchval("SELECT pg_backend_pid()")
                return pid

        started = asyncio.Barrier(3)
        return set(await asyncio.gather(*(one(started) for _ in range(3))))

    try:
        before = await backend_pids()
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            async with database.transaction(readonly=True) as tx:
                await tx.connection.execute("UPDATE users SET name = name WHERE false")
        after = await backend_pids()
    finally:
        await database.dispose()

    assert len(before) == len(after) == 3
    assert before.isdisjoint(after)
