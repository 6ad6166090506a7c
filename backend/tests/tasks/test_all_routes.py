"""What every task route does alike: 404 for a missing or another user's task, 403 for
another user's namespace, 401 without a token, 422 for a malformed id."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.accounts import Account
from tests.fixtures.tasks import (
    NOT_FOUND,
    create_task,
    task_count,
    task_row,
)

# Every test here writes tasks for the package's shared accounts (see conftest.py).
pytestmark = pytest.mark.usefixtures("clean_tasks")

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
