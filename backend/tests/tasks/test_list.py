"""GET /api/{user_id}/tasks: the caller's own tasks, newest first, and the completed filter."""

from __future__ import annotations

import httpx
import pytest

from tests.fixtures.accounts import Account
from tests.fixtures.tasks import (
    create_task,
)

# Every test here writes tasks for the package's shared accounts (see conftest.py).
pytestmark = pytest.mark.usefixtures("clean_tasks")


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
