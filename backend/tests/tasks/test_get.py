"""GET /api/{user_id}/tasks/{task_id}: the task as stored."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.accounts import Account
from tests.fixtures.tasks import (
    assert_body_matches_row,
    assert_task_shape,
    create_task,
    parse_time,
    task_row,
)

# Every test here writes tasks for the package's shared accounts (see conftest.py).
pytestmark = pytest.mark.usefixtures("clean_tasks")


async def test_get_returns_the_task(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    created = await create_task(client, account, "Read", description="A book")

    response = await client.get(f"{account.tasks_url}/{created['id']}", headers=account.headers)

    assert response.status_code == 200
    assert response.json() == created
    assert_task_shape(response.json())
    assert_body_matches_row(response.json(), await task_row(engine, created["id"]))


async def test_completed_at_is_an_iso_time_with_timezone(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    created = await create_task(client, account)
    await client.patch(f"{account.tasks_url}/{created['id']}/complete", headers=account.headers)

    body = (
        await client.get(f"{account.tasks_url}/{created['id']}", headers=account.headers)
    ).json()

    assert_task_shape(body)
    assert_body_matches_row(body, await task_row(engine, created["id"]))
    assert parse_time(body["completed_at"]) >= parse_time(body["created_at"])
