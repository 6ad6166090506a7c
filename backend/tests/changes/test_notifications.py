"""Every committed write of a task announces its owner's id on `task_changes` (TaskRepository,
through db/notifications.py NotificationSender): what wakes the event streams of every process.
After the commit, only for a write that happened, batched per process, and "*" after the
trash's purge."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.changes.models import TASK_CHANGES_CHANNEL
from app.db.database import Database
from app.db.notifications import EVERY_KEY, MAX_PAYLOAD_BYTES, NotificationSender, _payloads
from app.db.purge import BatchPurge
from app.tasks.trash_purge import TRASH_RETENTION
from tests.fixtures.accounts import Account, SignUp
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
    """The keys announced within a quiet period, in order."""
    keys = []
    while True:
        try:
            keys += (await asyncio.wait_for(queue.get(), QUIET_SECONDS)).split(",")
        except TimeoutError:
            return keys


async def test_each_write_through_the_api_announces_its_owner_after_its_commit(
    client: httpx.AsyncClient, logged_in: Account, notified: asyncio.Queue[str], engine: AsyncEngine
) -> None:
    task = await create_task(client, logged_in, "one")
    payload = await asyncio.wait_for(notified.get(), 5)
    assert payload == logged_in.id
    async with engine.connect() as connection:  # committed before it was announced
        found = await connection.scalar(
            text("SELECT count(*) FROM tasks WHERE id = :id"), {"id": uuid.UUID(task["id"])}
        )
    assert found == 1

    url = f"{logged_in.tasks_url}/{task['id']}"
    writes = [
        ("PATCH", url, {"title": "two"}),
        ("PATCH", f"{url}/complete", None),
        ("DELETE", url, None),
        ("POST", f"/api/{logged_in.id}/trash/{task['id']}/restore", None),
        ("DELETE", url, None),
        ("DELETE", f"/api/{logged_in.id}/trash/{task['id']}", None),
    ]
    for method, target, body in writes:
        response = await client.request(method, target, json=body, headers=logged_in.headers)
        assert response.status_code in (200, 204), response.text
        assert await drained(notified) == [logged_in.id], (method, target)


async def test_no_announcement_for_a_write_that_did_not_happen(
    client: httpx.AsyncClient, logged_in: Account, notified: asyncio.Queue[str]
) -> None:
    key = {"Idempotency-Key": "notify-once"}
    created = await client.post(
        logged_in.tasks_url, json={"title": "x"}, headers=logged_in.headers | key
    )
    assert created.status_code == 201
    assert await drained(notified) == [logged_in.id]
    url = f"{logged_in.tasks_url}/{created.json()['id']}"
    not_written = [
        ("POST", logged_in.tasks_url, {"title": "x"}, key, 201),  # a replay
        ("PATCH", url, {"title": "y"}, {"If-Match": '"9"'}, 412),  # a stale version
        ("PATCH", f"{logged_in.tasks_url}/{uuid.uuid4()}", {"title": "y"}, {}, 404),
    ]
    for method, target, body, headers, status in not_written:
        response = await client.request(
            method, target, json=body, headers=logged_in.headers | headers
        )
        assert response.status_code == status, response.text
    assert await drained(notified) == []


async def test_concurrent_writes_of_many_owners_are_all_announced_in_fewer_notifications(
    client: httpx.AsyncClient, sign_up: SignUp, notified: asyncio.Queue[str]
) -> None:
    accounts = [await sign_up() for _ in range(6)]
    await drained(notified)
    await asyncio.gather(
        *(create_task(client, account, f"t{n}") for account in accounts for n in range(5))
    )
    keys = await drained(notified)
    assert set(keys) == {account.id for account in accounts}


async def test_the_trash_purge_announces_every_owner(
    client: httpx.AsyncClient,
    logged_in: Account,
    notified: asyncio.Queue[str],
    database: Database,
) -> None:
    task = await create_task(client, logged_in, "old")
    await client.delete(f"{logged_in.tasks_url}/{task['id']}", headers=logged_in.headers)
    await drained(notified)
    purge = BatchPurge(database, TRASH_RETENTION, kept_for=timedelta(0))
    assert await purge.purge() == 1
    assert await drained(notified) == [EVERY_KEY]
    assert await purge.purge() == 0  # nothing purged: nothing announced
    assert await drained(notified) == []


async def test_many_keys_are_split_into_payloads_postgresql_accepts(
    database: Database, notified: asyncio.Queue[str]
) -> None:
    keys = {str(uuid.uuid4()) for _ in range(700)}
    payloads = list(_payloads(keys))
    assert len(payloads) == 4
    assert all(len(payload) <= MAX_PAYLOAD_BYTES for payload in payloads)
    sender = NotificationSender(database.fetch_value)
    for key in keys:
        sender.send(TASK_CHANGES_CHANNEL, key)
    await sender.stop()
    assert set(await drained(notified)) == keys
