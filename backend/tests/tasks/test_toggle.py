"""PATCH /api/{user_id}/tasks/{task_id}/complete: the completion flips, and the timestamps
every change moves."""

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


async def test_toggle_completes_an_open_task(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    created = await create_task(client, account)

    response = await client.patch(
        f"{account.tasks_url}/{created['id']}/complete", headers=account.headers
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert_task_shape(body)
    assert body["completed"] is True
    assert parse_time(body["completed_at"]) >= parse_time(created["created_at"])
    assert_body_matches_row(body, await task_row(engine, created["id"]))


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
    changed = {"updated_at", "version"}
    assert {k: v for k, v in body.items() if k not in changed} == {
        k: v for k, v in created.items() if k not in changed
    }
    # Back where it started, but two changes later: a client holding version 1 is stale.
    assert body["version"] == created["version"] + 2
    assert_body_matches_row(body, await task_row(engine, created["id"]))


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

    assert_body_matches_row(previous, await task_row(engine, created["id"]))
