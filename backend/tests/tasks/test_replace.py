"""PUT /api/{user_id}/tasks/{task_id}: title and description replaced, completion kept."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.accounts import Account
from tests.fixtures.tasks import (
    assert_body_matches_row,
    assert_refused_and_unchanged,
    assert_task_shape,
    create_task,
    parse_time,
    task_row,
)

# Every test here writes tasks for the package's shared accounts (see conftest.py).
pytestmark = pytest.mark.usefixtures("clean_tasks")


async def test_put_replaces_title_and_description(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    created = await create_task(client, account, "old", description="old text")

    response = await client.put(
        f"{account.tasks_url}/{created['id']}",
        json={"title": "  new  ", "description": "new text"},
        headers=account.headers,
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert_task_shape(body)
    assert (body["id"], body["title"], body["description"]) == (
        created["id"],
        "new",
        "new text",
    )
    assert_body_matches_row(body, await task_row(engine, created["id"]))


async def test_put_keeps_completed_even_if_the_body_says_otherwise(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    created = await create_task(client, account)
    url = f"{account.tasks_url}/{created['id']}"
    completed = (await client.patch(f"{url}/complete", headers=account.headers)).json()

    response = await client.put(
        url, json={"title": "renamed", "completed": False}, headers=account.headers
    )

    assert response.status_code == 200
    body = response.json()
    assert body["title"] == "renamed"
    assert body["completed"] is True
    assert body["completed_at"] == completed["completed_at"]
    row = await task_row(engine, created["id"])
    assert row is not None
    assert row["completed"] is True
    assert row["completed_at"] == parse_time(completed["completed_at"])


async def test_put_without_description_keeps_it(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    created = await create_task(client, account, "old", description="keep me")

    response = await client.put(
        f"{account.tasks_url}/{created['id']}", json={"title": "new"}, headers=account.headers
    )

    assert response.status_code == 200
    assert response.json()["description"] == "keep me"
    row = await task_row(engine, created["id"])
    assert row is not None
    assert (row["title"], row["description"]) == ("new", "keep me")


async def test_put_with_null_description_clears_it(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    created = await create_task(client, account, "old", description="drop me")

    response = await client.put(
        f"{account.tasks_url}/{created['id']}",
        json={"title": "old", "description": None},
        headers=account.headers,
    )

    assert response.status_code == 200
    assert response.json()["description"] is None
    row = await task_row(engine, created["id"])
    assert row is not None
    assert row["description"] is None


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"description": "no title"}, id="title-missing"),
        pytest.param({"title": None}, id="title-null"),
        pytest.param({"title": "  "}, id="title-blank"),
        pytest.param({"title": "a" * 256}, id="title-256"),
        pytest.param({"title": "t", "description": "d" * 1001}, id="desc-1001"),
    ],
)
async def test_put_rejects_invalid_bodies_and_leaves_the_task_unchanged(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine, payload: dict[str, Any]
) -> None:
    await assert_refused_and_unchanged(client, account, engine, "PUT", json=payload)


async def test_put_rejects_a_body_that_is_not_json(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    await assert_refused_and_unchanged(
        client, account, engine, "PUT", content=b"title: x", content_type="application/json"
    )
