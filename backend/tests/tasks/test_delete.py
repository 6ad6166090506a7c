"""DELETE /api/{user_id}/tasks/{task_id}: 204, the row in the trash, the others kept."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.accounts import Account
from tests.fixtures.tasks import (
    NOT_FOUND,
    assert_body_matches_row,
    create_task,
    is_trashed,
    task_count,
    task_row,
)

# Every test here writes tasks for the package's shared accounts (see conftest.py).
pytestmark = pytest.mark.usefixtures("clean_tasks")


async def test_delete_returns_204_with_an_empty_body_and_moves_the_row_to_the_trash(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    created = await create_task(client, account)
    url = f"{account.tasks_url}/{created['id']}"

    response = await client.delete(url, headers=account.headers)

    assert response.status_code == 204
    assert response.content == b""
    assert await is_trashed(engine, created["id"])
    assert (await client.get(url, headers=account.headers)).json() == NOT_FOUND


async def test_delete_twice_gives_404_the_second_time(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    created = await create_task(client, account)
    url = f"{account.tasks_url}/{created['id']}"
    assert (await client.delete(url, headers=account.headers)).status_code == 204

    response = await client.delete(url, headers=account.headers)

    assert response.status_code == 404
    assert response.json() == NOT_FOUND
    assert await task_count(engine) == 0


async def test_delete_removes_only_that_task(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    doomed = await create_task(client, account, "doomed")
    kept = await create_task(client, account, "kept")

    await client.delete(f"{account.tasks_url}/{doomed['id']}", headers=account.headers)

    listed = await client.get(account.tasks_url, headers=account.headers)
    assert listed.json() == [kept]
    assert_body_matches_row(kept, await task_row(engine, kept["id"]))
