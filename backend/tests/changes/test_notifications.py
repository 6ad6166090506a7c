"""Every committed change notifies `task_changes` with its owner's id (migration 0006): what
wakes the event streams of every process. Nothing for a change that rolled back, one
notification per owner and transaction however many rows it changed, and after the commit."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.changes.models import TASK_CHANGES_CHANNEL
from tests.fixtures.accounts import Account
from tests.fixtures.cluster import asyncpg_dsn
from tests.fixtures.tasks import create_task

pytestmark = pytest.mark.usefixtures("clean_database")
QUIET_SECONDS = 0.3


@pytest.fixture
async def notified(database_url: str) -> AsyncIterator[asyncio.Queue[str]]:
    """The payloads `task_changes` delivers to a session listening on its own connection."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    await connection.add_listener(TASK_CHANGES_CHANNEL, lambda *args: queue.put_nowait(args[3]))
    try:
        yield queue
    finally:
        await connection.close()


async def drained(queue: asyncio.Queue[str]) -> list[str]:
    """What arrives within a quiet period."""
    payloads = []
    while True:
        try:
            payloads.append(await asyncio.wait_for(queue.get(), QUIET_SECONDS))
        except TimeoutError:
            return payloads


async def test_each_write_through_the_api_notifies_its_owner_once(
    client: httpx.AsyncClient, logged_in: Account, notified: asyncio.Queue[str]
) -> None:
    task = await create_task(client, logged_in, "one")
    assert await drained(notified) == [logged_in.id]
    response = await client.delete(f"{logged_in.tasks_url}/{task['id']}", headers=logged_in.headers)
    assert response.status_code == 204
    assert await drained(notified) == [logged_in.id]


async def test_a_transaction_notifies_after_its_commit_once_per_owner_and_never_on_rollback(
    client: httpx.AsyncClient,
    logged_in: Account,
    engine: AsyncEngine,
    notified: asyncio.Queue[str],
) -> None:
    for title in ("a", "b", "c"):
        await create_task(client, logged_in, title)
    await drained(notified)
    owner = uuid.UUID(logged_in.id)
    rename = text("UPDATE tasks SET title = title || '!' WHERE user_id = :owner")

    async with engine.connect() as connection:
        transaction = await connection.begin()
        await connection.execute(rename, {"owner": owner})
        assert await drained(notified) == []  # not before the commit: nothing is visible yet
        await transaction.rollback()
    assert await drained(notified) == []

    async with engine.connect() as connection:
        transaction = await connection.begin()
        assert (await connection.execute(rename, {"owner": owner})).rowcount == 3
        await transaction.commit()
    assert await drained(notified) == [logged_in.id]  # three rows, one notification
