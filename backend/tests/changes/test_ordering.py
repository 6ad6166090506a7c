"""Why no reader ever skips a change (issue 16): an owner's change takes its number under the
owner's change lock, held until it commits, so a later change of the same owner cannot commit
a higher number while a lower one is still open, and a reader's cursor never passes a number
that could still appear. Another owner's changes do not wait."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.accounts import Account, sign_up_via
from tests.fixtures.tasks import create_task

pytestmark = pytest.mark.usefixtures("clean_database")
BLOCKED_SECONDS = 0.5


async def feed(client: httpx.AsyncClient, account: Account, since: str) -> dict:
    response = await client.get(
        f"/api/{account.id}/changes", params={"since": since}, headers=account.headers
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_later_change_waits_for_an_open_one_and_the_reader_sees_both_in_order(
    client: httpx.AsyncClient, logged_in: Account, engine: AsyncEngine
) -> None:
    first = await create_task(client, logged_in, "first")
    second = await create_task(client, logged_in, "second")
    cursor = (await feed(client, logged_in, "0"))["cursor"]

    async with engine.connect() as connection:
        transaction = await connection.begin()
        # An operator's change, open: it has taken its number and holds the owner's lock.
        await connection.execute(
            text("UPDATE tasks SET title = 'first, slow' WHERE id = :id"),
            {"id": uuid.UUID(first["id"])},
        )
        later = asyncio.create_task(
            client.patch(
                f"{logged_in.tasks_url}/{second['id']}",
                json={"title": "second, quick"},
                headers=logged_in.headers,
            )
        )
        done, _ = await asyncio.wait({later}, timeout=BLOCKED_SECONDS)
        assert not done, "the later change committed while an earlier one was open"
        # Meanwhile a reader sees neither, and its cursor stays below both.
        meanwhile = await feed(client, logged_in, cursor)
        assert meanwhile == {"changes": [], "cursor": cursor, "has_more": False}
        await transaction.commit()

    response = await asyncio.wait_for(later, timeout=10)
    assert response.status_code == 200, response.text
    after = await feed(client, logged_in, cursor)
    assert [change["task"]["title"] for change in after["changes"]] == [
        "first, slow",
        "second, quick",
    ]


async def test_another_owners_change_does_not_wait(
    client: httpx.AsyncClient, logged_in: Account, engine: AsyncEngine
) -> None:
    mine = await create_task(client, logged_in, "mine")
    other = await sign_up_via(client)
    theirs = await create_task(client, other, "theirs")

    async with engine.connect() as connection:
        transaction = await connection.begin()
        await connection.execute(
            text("UPDATE tasks SET title = 'mine, slow' WHERE id = :id"),
            {"id": uuid.UUID(mine["id"])},
        )
        response = await asyncio.wait_for(
            client.patch(
                f"{other.tasks_url}/{theirs['id']}", json={"title": "x"}, headers=other.headers
            ),
            timeout=BLOCKED_SECONDS * 4,
        )
        await transaction.rollback()

    assert response.status_code == 200, response.text
    # The rolled-back change left a gap, not a change.
    body = await feed(client, logged_in, "0")
    assert [change["task"]["title"] for change in body["changes"]] == ["mine"]
