"""POST /api/{user_id}/tasks: the created task, its Location, what is stored, and a commit
that fails before the response."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.accounts import Account
from tests.fixtures.tasks import (
    assert_body_matches_row,
    assert_task_shape,
    create_task,
    task_count,
    task_row,
)

# Every test here writes tasks for the package's shared accounts (see conftest.py).
pytestmark = pytest.mark.usefixtures("clean_tasks")


async def test_create_returns_201_the_task_and_its_location(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    response = await client.post(
        account.tasks_url,
        json={"title": "Buy milk", "description": "Two litres"},
        headers=account.headers,
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert_task_shape(body)
    assert body["user_id"] == account.id
    assert body["title"] == "Buy milk"
    assert body["description"] == "Two litres"
    assert body["completed"] is False
    assert body["completed_at"] is None
    assert body["created_at"] == body["updated_at"]
    assert response.headers["location"] == f"http://testserver{account.tasks_url}/{body['id']}"
    assert_body_matches_row(body, await task_row(engine, body["id"]))


async def test_location_of_a_created_task_serves_it(
    client: httpx.AsyncClient, account: Account
) -> None:
    created = await client.post(account.tasks_url, json={"title": "a"}, headers=account.headers)

    fetched = await client.get(created.headers["location"], headers=account.headers)

    assert fetched.status_code == 200
    assert fetched.json() == created.json()


async def test_location_leaves_out_a_query_string_sent_with_the_post(
    client: httpx.AsyncClient, account: Account
) -> None:
    response = await client.post(
        account.tasks_url, params={"via": "form"}, json={"title": "a"}, headers=account.headers
    )

    assert response.status_code == 201, response.text
    location = f"http://testserver{account.tasks_url}/{response.json()['id']}"
    assert response.headers["location"] == location


async def test_location_spells_the_owner_canonically_whatever_the_path_said(
    client: httpx.AsyncClient, account: Account
) -> None:
    response = await client.post(
        f"/api/{account.id.upper()}/tasks", json={"title": "a"}, headers=account.headers
    )

    assert response.status_code == 201, response.text
    location = f"http://testserver/api/{account.id}/tasks/{response.json()['id']}"
    assert response.headers["location"] == location


async def test_create_without_description_stores_null(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    body = await create_task(client, account, "No details")

    assert body["description"] is None
    row = await task_row(engine, body["id"])
    assert row is not None
    assert row["description"] is None


async def test_create_trims_the_title(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    body = await create_task(client, account, "  \t Buy milk \n ")

    assert body["title"] == "Buy milk"
    row = await task_row(engine, body["id"])
    assert row is not None
    assert row["title"] == "Buy milk"


@pytest.mark.parametrize(
    ("title", "stored"),
    [
        pytest.param("a" * 255, "a" * 255, id="255-chars"),
        pytest.param("  " + "a" * 255 + "  ", "a" * 255, id="255-after-trimming"),
        pytest.param("é" * 255, "é" * 255, id="255-multibyte-chars"),
        pytest.param("x", "x", id="1-char"),
    ],
)
async def test_create_accepts_titles_up_to_255_characters(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine, title: str, stored: str
) -> None:
    body = await create_task(client, account, title)

    assert body["title"] == stored
    row = await task_row(engine, body["id"])
    assert row is not None
    assert row["title"] == stored


async def test_create_accepts_a_1000_character_description(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    body = await create_task(client, account, "t", description="d" * 1000)

    row = await task_row(engine, body["id"])
    assert row is not None
    assert row["description"] == "d" * 1000


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        pytest.param({}, "title", id="title-missing"),
        pytest.param({"title": None}, "title", id="title-null"),
        pytest.param({"title": ""}, "title", id="title-empty"),
        pytest.param({"title": "   \t\n"}, "title", id="title-blank"),
        pytest.param({"title": "a" * 256}, "title", id="title-256"),
        pytest.param({"title": " " + "a" * 256 + " "}, "title", id="title-256-after-trimming"),
        pytest.param({"title": 42}, "title", id="title-not-a-string"),
        pytest.param({"title": "a\x00b"}, "title", id="title-nul"),
        pytest.param({"title": "t", "description": "d" * 1001}, "description", id="desc-1001"),
        pytest.param({"title": "t", "description": 7}, "description", id="desc-not-a-string"),
    ],
)
async def test_create_rejects_invalid_bodies_with_422_and_stores_nothing(
    client: httpx.AsyncClient,
    account: Account,
    engine: AsyncEngine,
    payload: dict[str, Any],
    field: str,
) -> None:
    response = await client.post(account.tasks_url, json=payload, headers=account.headers)

    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "validation_error"
    assert ["body", field] in [error["loc"][:2] for error in body["errors"]]
    assert await task_count(engine) == 0


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        pytest.param(b"{not json", "application/json", id="broken-json"),
        pytest.param(b"title=Buy+milk", "application/x-www-form-urlencoded", id="form"),
        pytest.param(b"Buy milk", "text/plain", id="text"),
        pytest.param(b'["Buy milk"]', "application/json", id="json-array"),
        pytest.param(b'"Buy milk"', "application/json", id="json-string"),
        pytest.param(b"", "application/json", id="empty"),
    ],
)
async def test_create_rejects_a_body_that_is_not_a_json_object(
    client: httpx.AsyncClient,
    account: Account,
    engine: AsyncEngine,
    content: bytes,
    content_type: str,
) -> None:
    response = await client.post(
        account.tasks_url,
        content=content,
        headers={**account.headers, "Content-Type": content_type},
    )

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    assert await task_count(engine) == 0


async def test_create_ignores_owner_id_and_timestamps_sent_in_the_body(
    client: httpx.AsyncClient, account: Account, other_account: Account, engine: AsyncEngine
) -> None:
    chosen_id = str(uuid.uuid4())
    response = await client.post(
        account.tasks_url,
        json={
            "title": "Mine",
            "id": chosen_id,
            "user_id": other_account.id,
            "completed": True,
            "completed_at": "2001-01-01T00:00:00Z",
            "created_at": "2001-01-01T00:00:00Z",
            "updated_at": "2001-01-01T00:00:00Z",
            "version": 7,
        },
        headers=account.headers,
    )

    assert response.status_code == 201, response.text
    body = response.json()
    # The id is the client's to choose (an offline client's); nothing else it sent is.
    assert body["id"] == chosen_id
    assert body["user_id"] == account.id
    assert body["completed"] is False
    assert body["completed_at"] is None
    assert body["version"] == 1
    row = await task_row(engine, body["id"])
    assert row is not None
    assert str(row["user_id"]) == account.id
    assert row["completed"] is False
    assert row["completed_at"] is None
    assert row["created_at"] > datetime(2020, 1, 1, tzinfo=UTC)
    assert row["version"] == 1


async def test_a_failing_commit_is_an_error_not_a_201(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    # A deferred constraint fails at COMMIT, after the route has returned its task.
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "CREATE FUNCTION reject_commit() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'rejected at commit'; END $$"
            )
        )
        await connection.execute(
            text(
                "CREATE CONSTRAINT TRIGGER reject_commit AFTER INSERT ON tasks "
                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION reject_commit()"
            )
        )
    try:
        response = await client.post(
            account.tasks_url, json={"title": "never stored"}, headers=account.headers
        )
    finally:
        async with engine.begin() as connection:
            await connection.execute(text("DROP TRIGGER reject_commit ON tasks"))
            await connection.execute(text("DROP FUNCTION reject_commit()"))

    assert response.status_code == 500
    assert "location" not in response.headers
    assert await task_count(engine) == 0
