"""Every committed write of a task announces its owner's id on `task_changes` (TaskRepository,
through db/notifications.py NotificationSender): what wakes the event streams of every process.
After the commit, for a write that happened or was replayed, batched per process, kept and sent
again when sending fails, and for the owners of what the trash's purge deleted."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.changes.models import TASK_CHANGES_CHANNEL
from app.db.database import Database
from app.db.engine import connect_outside_pool
from app.db.errors import DatabaseUnavailableError
from app.db.notifications import (
    EVERY_KEY,
    MAX_PAYLOAD_BYTES,
    NOTIFY,
    NotificationSender,
    _payloads,
)
from app.db.purge import BatchPurge
from app.settings import Settings
from app.tasks.trash_purge import TRASH_RETENTION
from tests.fixtures.accounts import Account, SignUp
from tests.fixtures.tasks import create_task

pytestmark = pytest.mark.usefixtures("clean_database")
QUIET_SECONDS = 0.3


@pytest.fixture
async def notified(settings: Settings) -> AsyncIterator[asyncio.Queue[str]]:
    """The payloads `task_changes` delivers to a session listening on its own connection
    (opened as the app opens its listener's: the embedded server's URL names a socket)."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    connection = await connect_outside_pool(settings, settings.database)
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


async def test_no_announcement_for_a_write_that_did_not_happen_and_one_for_a_replay(
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
        ("PATCH", url, {"title": "y"}, {"If-Match": '"9"'}, 412),  # a stale version
        ("PATCH", f"{logged_in.tasks_url}/{uuid.uuid4()}", {"title": "y"}, {}, 404),
    ]
    for method, target, body, headers, status in not_written:
        response = await client.request(
            method, target, json=body, headers=logged_in.headers | headers
        )
        assert response.status_code == status, response.text
    assert await drained(notified) == []
    # A retry whose first attempt's announcement a lost connection may have cut off.
    replayed = await client.post(
        logged_in.tasks_url, json={"title": "x"}, headers=logged_in.headers | key
    )
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert await drained(notified) == [logged_in.id]


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


async def test_the_trash_purge_announces_the_owners_of_what_it_deleted(
    client: httpx.AsyncClient,
    sign_up: SignUp,
    notified: asyncio.Queue[str],
    database: Database,
) -> None:
    accounts = [await sign_up() for _ in range(3)]
    for account in accounts[:2]:
        for title in ("a", "b"):
            task = await create_task(client, account, title)
            await client.delete(f"{account.tasks_url}/{task['id']}", headers=account.headers)
    await create_task(client, accounts[2], "kept")
    await drained(notified)
    purge = BatchPurge(database, TRASH_RETENTION, kept_for=timedelta(0))
    assert await purge.purge() == 4
    assert sorted(await drained(notified)) == sorted(account.id for account in accounts[:2])
    assert await purge.purge() == 0  # nothing purged: nothing announced
    assert await drained(notified) == []


async def test_a_failed_send_keeps_its_keys_and_sends_them_again(
    database: Database, notified: asyncio.Queue[str]
) -> None:
    attempts = 0

    async def fails_once(statement: object, **values: object) -> object:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            # The real error of a pool that gave no connection in time.
            raise DatabaseUnavailableError()
        return await database.fetch_value(NOTIFY, **values)

    sender = NotificationSender(fails_once)
    sender.send(TASK_CHANGES_CHANNEL, "first")
    await asyncio.sleep(0)  # the first attempt is under way
    sender.send(TASK_CHANGES_CHANNEL, "second")
    assert sorted(await drained_within(notified, 3)) == ["first", "second"]
    assert attempts == 2
    await sender.stop()


async def test_star_stands_for_every_key_and_after_stop_nothing_is_sent(
    database: Database, notified: asyncio.Queue[str]
) -> None:
    sender = NotificationSender(database.fetch_value)
    for key in ("a", EVERY_KEY, "b"):
        sender.send(TASK_CHANGES_CHANNEL, key)
    await sender.stop()
    assert await drained(notified) == [EVERY_KEY]
    sender.send(TASK_CHANGES_CHANNEL, "late")
    assert await drained(notified) == []


async def drained_within(queue: asyncio.Queue[str], seconds: float) -> list[str]:
    """The keys announced, waiting up to ``seconds`` for the first (a retry's backoff)."""
    first = await asyncio.wait_for(queue.get(), seconds)
    return first.split(",") + await drained(queue)


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
