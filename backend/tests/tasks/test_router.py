"""The task endpoints through HTTP: statuses, bodies, headers and what ends up in the database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.accounts import Account
from tests.fixtures.tasks import create_task, parse_time, task_count, task_row

# Every test here writes tasks for the package's shared accounts (see conftest.py).
pytestmark = pytest.mark.usefixtures("clean_tasks")

TASK_FIELDS = {
    "id",
    "user_id",
    "title",
    "description",
    "completed",
    "completed_at",
    "created_at",
    "updated_at",
}
NOT_FOUND = {"detail": "Task not found", "code": "task_not_found"}

# (method, path under the task's URL, body) for every route on one task.
ONE_TASK_ROUTES = [
    pytest.param("GET", "", None, id="get"),
    pytest.param("PUT", "", {"title": "Changed"}, id="put"),
    pytest.param("PATCH", "", {"title": "Changed"}, id="patch"),
    pytest.param("PATCH", "/complete", None, id="toggle"),
    pytest.param("DELETE", "", None, id="delete"),
]
COLLECTION_ROUTES = [
    pytest.param("GET", None, id="list"),
    pytest.param("POST", {"title": "Intruder"}, id="create"),
]
TASK_EVENTS = {"task_created", "task_updated", "task_toggled", "task_deleted"}


def _assert_task_shape(body: dict[str, Any]) -> None:
    assert set(body) == TASK_FIELDS
    assert str(uuid.UUID(body["id"])) == body["id"]
    assert str(uuid.UUID(body["user_id"])) == body["user_id"]
    parse_time(body["created_at"])
    parse_time(body["updated_at"])
    if body["completed_at"] is not None:
        parse_time(body["completed_at"])


async def _assert_refused_and_unchanged(
    client: httpx.AsyncClient,
    account: Account,
    engine: AsyncEngine,
    method: str,
    content_type: str | None = None,
    **body: Any,
) -> None:
    """Send ``body`` to a fresh task with ``method``: 422 validation_error, row untouched."""
    created = await create_task(client, account, "keep", description="as is")
    before = await task_row(engine, created["id"])
    headers = {**account.headers, **({"Content-Type": content_type} if content_type else {})}

    response = await client.request(
        method, f"{account.tasks_url}/{created['id']}", headers=headers, **body
    )

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    assert await task_row(engine, created["id"]) == before


def _assert_body_matches_row(body: dict[str, Any], row: dict[str, Any] | None) -> None:
    assert row is not None
    assert body["id"] == str(row["id"])
    assert body["user_id"] == str(row["user_id"])
    assert body["title"] == row["title"]
    assert body["description"] == row["description"]
    assert body["completed"] is row["completed"]
    assert parse_time(body["created_at"]) == row["created_at"]
    assert parse_time(body["updated_at"]) == row["updated_at"]
    if row["completed_at"] is None:
        assert body["completed_at"] is None
    else:
        assert parse_time(body["completed_at"]) == row["completed_at"]


# --- create ---------------------------------------------------------------------------------


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
    _assert_task_shape(body)
    assert body["user_id"] == account.id
    assert body["title"] == "Buy milk"
    assert body["description"] == "Two litres"
    assert body["completed"] is False
    assert body["completed_at"] is None
    assert body["created_at"] == body["updated_at"]
    assert response.headers["location"] == f"http://testserver{account.tasks_url}/{body['id']}"
    _assert_body_matches_row(body, await task_row(engine, body["id"]))


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
        },
        headers=account.headers,
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["id"] != chosen_id
    assert body["user_id"] == account.id
    assert body["completed"] is False
    assert body["completed_at"] is None
    row = await task_row(engine, body["id"])
    assert row is not None
    assert str(row["user_id"]) == account.id
    assert row["completed"] is False
    assert row["completed_at"] is None
    assert row["created_at"] > datetime(2020, 1, 1, tzinfo=UTC)
    assert await task_row(engine, chosen_id) is None


# --- get ------------------------------------------------------------------------------------


async def test_get_returns_the_task(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    created = await create_task(client, account, "Read", description="A book")

    response = await client.get(f"{account.tasks_url}/{created['id']}", headers=account.headers)

    assert response.status_code == 200
    assert response.json() == created
    _assert_task_shape(response.json())
    _assert_body_matches_row(response.json(), await task_row(engine, created["id"]))


async def test_completed_at_is_an_iso_time_with_timezone(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    created = await create_task(client, account)
    await client.patch(f"{account.tasks_url}/{created['id']}/complete", headers=account.headers)

    body = (
        await client.get(f"{account.tasks_url}/{created['id']}", headers=account.headers)
    ).json()

    _assert_task_shape(body)
    _assert_body_matches_row(body, await task_row(engine, created["id"]))
    assert parse_time(body["completed_at"]) >= parse_time(body["created_at"])


# --- list -----------------------------------------------------------------------------------


async def test_list_of_a_new_account_is_empty(client: httpx.AsyncClient, account: Account) -> None:
    response = await client.get(account.tasks_url, headers=account.headers)

    assert response.status_code == 200
    assert response.json() == []
    assert "link" not in response.headers


async def test_list_returns_own_tasks_newest_first(
    client: httpx.AsyncClient, account: Account, other_account: Account
) -> None:
    first = await create_task(client, account, "first")
    await create_task(client, other_account, "not mine")
    second = await create_task(client, account, "second")
    third = await create_task(client, account, "third")

    response = await client.get(account.tasks_url, headers=account.headers)

    assert response.status_code == 200
    assert response.json() == [third, second, first]
    assert "link" not in response.headers


@pytest.mark.parametrize(("completed", "expected"), [("true", ["done"]), ("false", ["open"])])
async def test_list_filters_on_completed(
    client: httpx.AsyncClient, account: Account, completed: str, expected: list[str]
) -> None:
    done = await create_task(client, account, "done")
    await client.patch(f"{account.tasks_url}/{done['id']}/complete", headers=account.headers)
    await create_task(client, account, "open")

    response = await client.get(
        account.tasks_url, params={"completed": completed}, headers=account.headers
    )

    assert response.status_code == 200
    assert [task["title"] for task in response.json()] == expected


@pytest.mark.parametrize("value", ["maybe", ""])
async def test_list_rejects_an_invalid_completed_filter(
    client: httpx.AsyncClient, account: Account, value: str
) -> None:
    response = await client.get(
        account.tasks_url, params={"completed": value}, headers=account.headers
    )

    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


# --- put ------------------------------------------------------------------------------------


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
    _assert_task_shape(body)
    assert (body["id"], body["title"], body["description"]) == (
        created["id"],
        "new",
        "new text",
    )
    _assert_body_matches_row(body, await task_row(engine, created["id"]))


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
    await _assert_refused_and_unchanged(client, account, engine, "PUT", json=payload)


async def test_put_rejects_a_body_that_is_not_json(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    await _assert_refused_and_unchanged(
        client, account, engine, "PUT", content=b"title: x", content_type="application/json"
    )


# --- patch ----------------------------------------------------------------------------------


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
    _assert_body_matches_row(body, await task_row(engine, created["id"]))


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
    _assert_body_matches_row(completed.json(), await task_row(engine, created["id"]))

    reopened = await client.patch(url, json={"completed": False}, headers=account.headers)

    assert reopened.status_code == 200
    assert reopened.json()["completed"] is False
    assert reopened.json()["completed_at"] is None
    _assert_body_matches_row(reopened.json(), await task_row(engine, created["id"]))


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
    _assert_body_matches_row(created, await task_row(engine, created["id"]))


async def test_patch_with_an_empty_body_changes_nothing(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    created = await create_task(client, account, "same", description="same")

    response = await client.patch(
        f"{account.tasks_url}/{created['id']}", json={}, headers=account.headers
    )

    assert response.status_code == 200
    assert response.json() == created
    _assert_body_matches_row(created, await task_row(engine, created["id"]))


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
    await _assert_refused_and_unchanged(client, account, engine, "PATCH", json=payload)


async def test_patch_rejects_a_body_that_is_not_json(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    await _assert_refused_and_unchanged(
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

    response = await client.request(
        method,
        f"{account.tasks_url}/{created['id']}",
        json={
            "title": "new",
            "id": str(uuid.uuid4()),
            "user_id": other_account.id,
            "created_at": "2001-01-01T00:00:00Z",
            "completed_at": "2001-01-01T00:00:00Z",
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


# --- toggle ---------------------------------------------------------------------------------


async def test_toggle_completes_an_open_task(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    created = await create_task(client, account)

    response = await client.patch(
        f"{account.tasks_url}/{created['id']}/complete", headers=account.headers
    )

    assert response.status_code == 200, response.text
    body = response.json()
    _assert_task_shape(body)
    assert body["completed"] is True
    assert parse_time(body["completed_at"]) >= parse_time(created["created_at"])
    _assert_body_matches_row(body, await task_row(engine, created["id"]))


async def test_toggle_twice_returns_to_the_start(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    created = await create_task(client, account)
    url = f"{account.tasks_url}/{created['id']}/complete"
    await client.patch(url, headers=account.headers)

    response = await client.patch(url, headers=account.headers)

    assert response.status_code == 200
    body = response.json()
    assert body["completed"] is False
    assert body["completed_at"] is None
    assert {k: v for k, v in body.items() if k != "updated_at"} == {
        k: v for k, v in created.items() if k != "updated_at"
    }
    _assert_body_matches_row(body, await task_row(engine, created["id"]))


async def test_updated_at_moves_on_every_change_and_created_at_never(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    created = await create_task(client, account, "v1")
    url = f"{account.tasks_url}/{created['id']}"
    changes = [
        ("PUT", url, {"title": "v2"}),
        ("PUT", url, {"title": "v2", "description": "d"}),
        ("PATCH", url, {"title": "v3"}),
        ("PATCH", url, {"description": None}),
        ("PATCH", url, {"completed": True}),
        ("PATCH", f"{url}/complete", None),
        ("PATCH", f"{url}/complete", None),
    ]
    previous = created

    for method, target, payload in changes:
        response = await client.request(method, target, json=payload, headers=account.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["created_at"] == created["created_at"], (method, payload)
        assert parse_time(body["updated_at"]) > parse_time(previous["updated_at"]), (
            method,
            payload,
        )
        previous = body

    _assert_body_matches_row(previous, await task_row(engine, created["id"]))


# --- delete ---------------------------------------------------------------------------------


async def test_delete_returns_204_with_an_empty_body_and_removes_the_row(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    created = await create_task(client, account)
    url = f"{account.tasks_url}/{created['id']}"

    response = await client.delete(url, headers=account.headers)

    assert response.status_code == 204
    assert response.content == b""
    assert await task_row(engine, created["id"]) is None
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
    _assert_body_matches_row(kept, await task_row(engine, kept["id"]))


# --- not found, foreign, forbidden, unauthenticated -------------------------------------------


@pytest.mark.parametrize(("method", "suffix", "payload"), ONE_TASK_ROUTES)
async def test_missing_task_is_404(
    client: httpx.AsyncClient,
    account: Account,
    engine: AsyncEngine,
    method: str,
    suffix: str,
    payload: dict[str, Any] | None,
) -> None:
    await create_task(client, account)

    response = await client.request(
        method, f"{account.tasks_url}/{uuid.uuid4()}{suffix}", json=payload, headers=account.headers
    )

    assert response.status_code == 404
    assert response.json() == NOT_FOUND
    assert await task_count(engine) == 1


@pytest.mark.parametrize(("method", "suffix", "payload"), ONE_TASK_ROUTES)
async def test_another_users_task_is_404_and_stays_unchanged(
    client: httpx.AsyncClient,
    account: Account,
    other_account: Account,
    engine: AsyncEngine,
    method: str,
    suffix: str,
    payload: dict[str, Any] | None,
) -> None:
    theirs = await create_task(client, other_account, "theirs", description="private")
    before = await task_row(engine, theirs["id"])

    # The caller's own namespace, the other user's task id.
    response = await client.request(
        method, f"{account.tasks_url}/{theirs['id']}{suffix}", json=payload, headers=account.headers
    )

    assert response.status_code == 404
    assert response.json() == NOT_FOUND
    assert await task_row(engine, theirs["id"]) == before


@pytest.mark.parametrize(("method", "suffix", "payload"), ONE_TASK_ROUTES)
async def test_foreign_namespace_is_403_on_a_task_route(
    client: httpx.AsyncClient,
    account: Account,
    other_account: Account,
    engine: AsyncEngine,
    method: str,
    suffix: str,
    payload: dict[str, Any] | None,
) -> None:
    theirs = await create_task(client, other_account, "theirs")
    before = await task_row(engine, theirs["id"])

    # The other user's namespace and task, with the caller's token.
    response = await client.request(
        method,
        f"{other_account.tasks_url}/{theirs['id']}{suffix}",
        json=payload,
        headers=account.headers,
    )

    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    assert "theirs" not in response.text
    assert await task_row(engine, theirs["id"]) == before


@pytest.mark.parametrize(("method", "payload"), COLLECTION_ROUTES)
async def test_foreign_namespace_is_403_on_the_collection(
    client: httpx.AsyncClient,
    account: Account,
    other_account: Account,
    engine: AsyncEngine,
    method: str,
    payload: dict[str, Any] | None,
) -> None:
    theirs = await create_task(client, other_account, "theirs")

    response = await client.request(
        method, other_account.tasks_url, json=payload, headers=account.headers
    )

    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    assert "theirs" not in response.text
    assert "location" not in response.headers
    assert await task_count(engine) == 1
    assert await task_row(engine, theirs["id"]) is not None


@pytest.mark.parametrize(
    ("method", "suffix", "payload"),
    [
        pytest.param("GET", None, None, id="list"),
        pytest.param("POST", None, {"title": "x"}, id="create"),
        *ONE_TASK_ROUTES,
    ],
)
async def test_every_route_needs_a_bearer_token(
    client: httpx.AsyncClient,
    account: Account,
    engine: AsyncEngine,
    method: str,
    suffix: str | None,
    payload: dict[str, Any] | None,
) -> None:
    mine = await create_task(client, account, "mine")
    before = await task_row(engine, mine["id"])
    url = account.tasks_url if suffix is None else f"{account.tasks_url}/{mine['id']}{suffix}"

    response = await client.request(method, url, json=payload)

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert response.headers["www-authenticate"] == "Bearer"
    assert await task_count(engine) == 1
    assert await task_row(engine, mine["id"]) == before


@pytest.mark.parametrize(("method", "suffix", "payload"), ONE_TASK_ROUTES)
@pytest.mark.parametrize("task_id", ["not-a-uuid", "123", "0" * 33])
async def test_malformed_task_id_is_422(
    client: httpx.AsyncClient,
    account: Account,
    method: str,
    suffix: str,
    payload: dict[str, Any] | None,
    task_id: str,
) -> None:
    response = await client.request(
        method, f"{account.tasks_url}/{task_id}{suffix}", json=payload, headers=account.headers
    )

    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "validation_error"
    assert ["path", "task_id"] in [error["loc"] for error in body["errors"]]


async def test_malformed_user_id_in_the_path_is_422(
    client: httpx.AsyncClient, account: Account
) -> None:
    response = await client.get("/api/me/tasks", headers=account.headers)

    assert response.status_code == 422
    assert ["path", "user_id"] in [error["loc"] for error in response.json()["errors"]]


# --- structured events ----------------------------------------------------------------------


async def _events(
    client: httpx.AsyncClient, method: str, url: str, account: Account, **kwargs: Any
) -> tuple[httpx.Response, list[dict[str, Any]]]:
    with structlog.testing.capture_logs() as captured:
        response = await client.request(method, url, headers=account.headers, **kwargs)
    return response, [entry for entry in captured if entry["event"] in TASK_EVENTS]


async def test_an_empty_patch_logs_no_event(client: httpx.AsyncClient, account: Account) -> None:
    created = await create_task(client, account)

    response, events = await _events(
        client, "PATCH", f"{account.tasks_url}/{created['id']}", account, json={}
    )

    assert response.status_code == 200
    assert events == []


async def test_create_logs_one_task_created_event(
    client: httpx.AsyncClient, account: Account
) -> None:
    response, events = await _events(
        client, "POST", account.tasks_url, account, json={"title": "t"}
    )

    assert response.status_code == 201
    assert [(e["event"], e["user_id"], e["task_id"]) for e in events] == [
        ("task_created", account.id, response.json()["id"])
    ]


@pytest.mark.parametrize(
    ("method", "suffix", "payload", "event"),
    [
        pytest.param("PUT", "", {"title": "u"}, "task_updated", id="put"),
        pytest.param("PATCH", "", {"completed": True}, "task_updated", id="patch"),
        pytest.param("PATCH", "/complete", None, "task_toggled", id="toggle"),
        pytest.param("DELETE", "", None, "task_deleted", id="delete"),
    ],
)
async def test_each_change_logs_one_event_with_user_and_task(
    client: httpx.AsyncClient,
    account: Account,
    method: str,
    suffix: str,
    payload: dict[str, Any] | None,
    event: str,
) -> None:
    created = await create_task(client, account)

    response, events = await _events(
        client, method, f"{account.tasks_url}/{created['id']}{suffix}", account, json=payload
    )

    assert response.status_code in (200, 204)
    assert [(e["event"], e["user_id"], e["task_id"]) for e in events] == [
        (event, account.id, created["id"])
    ]


async def test_a_change_to_a_missing_task_logs_no_task_event(
    client: httpx.AsyncClient, account: Account
) -> None:
    response, events = await _events(
        client, "PATCH", f"{account.tasks_url}/{uuid.uuid4()}/complete", account
    )

    assert response.status_code == 404
    assert events == []


# --- the transaction is committed before the response ---------------------------------------


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
