"""PATCH /api/{user_id}/tasks/{task_id}: only the fields sent change (and what PUT and PATCH
both ignore)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.accounts import Account
from tests.fixtures.tasks import (
    assert_body_matches_row,
    assert_refused_and_unchanged,
    create_task,
    parse_time,
    task_row,
)

# Every test here writes tasks for the package's shared accounts (see conftest.py).
pytestmark = pytest.mark.usefixtures("clean_tasks")


async def test_patch_changes_only_the_fields_sent(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    created = await create_task(client, account, "old", description="keep me")

    response = await client.patch(
        f"{account.tasks_url}/{created['id']}", json={"title": " new "}, headers=account.headers
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["title"], body["description"], body["completed"]) == ("new", "keep me", False)
    assert_body_matches_row(body, await task_row(engine, created["id"]))


async def test_patch_with_null_description_clears_it(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    created = await create_task(client, account, "title", description="drop me")

    response = await client.patch(
        f"{account.tasks_url}/{created['id']}", json={"description": None}, headers=account.headers
    )

    assert response.status_code == 200
    assert response.json()["title"] == "title"
    assert response.json()["description"] is None
    row = await task_row(engine, created["id"])
    assert row is not None
    assert (row["title"], row["description"]) == ("title", None)


async def test_patch_completed_true_sets_completed_at_and_false_clears_it(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    created = await create_task(client, account)
    url = f"{account.tasks_url}/{created['id']}"

    completed = await client.patch(url, json={"completed": True}, headers=account.headers)

    assert completed.status_code == 200
    assert completed.json()["completed"] is True
    assert parse_time(completed.json()["completed_at"]) >= parse_time(created["created_at"])
    assert_body_matches_row(completed.json(), await task_row(engine, created["id"]))

    reopened = await client.patch(url, json={"completed": False}, headers=account.headers)

    assert reopened.status_code == 200
    assert reopened.json()["completed"] is False
    assert reopened.json()["completed_at"] is None
    assert_body_matches_row(reopened.json(), await task_row(engine, created["id"]))


async def test_patch_completed_true_twice_is_idempotent(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    created = await create_task(client, account)
    url = f"{account.tasks_url}/{created['id']}"
    first = (await client.patch(url, json={"completed": True}, headers=account.headers)).json()

    second = await client.patch(url, json={"completed": True}, headers=account.headers)

    assert second.status_code == 200
    assert second.json() == first
    row = await task_row(engine, created["id"])
    assert row is not None
    assert row["completed"] is True
    assert row["completed_at"] == parse_time(first["completed_at"])
    assert row["updated_at"] == parse_time(first["updated_at"])


async def test_patch_completed_false_on_an_open_task_changes_nothing(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    created = await create_task(client, account)

    response = await client.patch(
        f"{account.tasks_url}/{created['id']}", json={"completed": False}, headers=account.headers
    )

    assert response.status_code == 200
    assert response.json() == created
    assert_body_matches_row(created, await task_row(engine, created["id"]))


async def test_patch_with_an_empty_body_changes_nothing(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    created = await create_task(client, account, "same", description="same")

    response = await client.patch(
        f"{account.tasks_url}/{created['id']}", json={}, headers=account.headers
    )

    assert response.status_code == 200
    assert response.json() == created
    assert_body_matches_row(created, await task_row(engine, created["id"]))


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"title": None}, id="title-null"),
        pytest.param({"completed": None}, id="completed-null"),
        pytest.param({"title": ""}, id="title-empty"),
        pytest.param({"title": " \t "}, id="title-blank"),
        pytest.param({"title": "a" * 256}, id="title-256"),
        pytest.param({"title": " " + "a" * 256 + " "}, id="title-256-after-trimming"),
        pytest.param({"description": "d" * 1001}, id="desc-1001"),
        pytest.param({"completed": "perhaps"}, id="completed-not-a-bool"),
        pytest.param({"title": "ok", "completed": None}, id="valid-title-with-completed-null"),
    ],
)
async def test_patch_rejects_invalid_bodies_and_leaves_the_task_unchanged(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine, payload: dict[str, Any]
) -> None:
    await assert_refused_and_unchanged(client, account, engine, "PATCH", json=payload)


async def test_patch_rejects_a_body_that_is_not_json(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    await assert_refused_and_unchanged(
        client, account, engine, "PATCH", content=b"completed=true", content_type="application/json"
    )


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_updates_ignore_owner_id_and_timestamps_sent_in_the_body(
    client: httpx.AsyncClient,
    account: Account,
    other_account: Account,
    engine: AsyncEngine,
    method: str,
) -> None:
    created = await create_task(client, account, "old")
    # A task changes lists and places only through /move (README): these are ignored too.
    other_list = await client.post(
        f"/api/{account.id}/lists", json={"name": "Elsewhere"}, headers=account.headers
    )
    assert other_list.status_code == 201, other_list.text

    response = await client.request(
        method,
        f"{account.tasks_url}/{created['id']}",
        json={
            "title": "new",
            "id": str(uuid.uuid4()),
            "user_id": other_account.id,
            "created_at": "2001-01-01T00:00:00Z",
            "completed_at": "2001-01-01T00:00:00Z",
            "list_id": other_list.json()["id"],
            "position": "0",
        },
        headers=account.headers,
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["id"], body["user_id"], body["title"]) == (created["id"], account.id, "new")
    assert body["created_at"] == created["created_at"]
    assert body["completed_at"] is None
    row = await task_row(engine, created["id"])
    assert row is not None
    assert str(row["user_id"]) == account.id
    assert row["created_at"] == parse_time(created["created_at"])
    assert row["completed_at"] is None
    assert (body["list_id"], body["position"]) == (created["list_id"], created["position"])
    assert str(row["list_id"]) == created["list_id"]
    assert row["position"] == created["position"]
