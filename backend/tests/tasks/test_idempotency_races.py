"""A retry whose statement started before the key's first request committed, and claimed the
key just after: it must answer the first request's answer, never 409 task_exists, 412 or 404.

The window is microseconds wide in production; here the retry is held inside it. A function in
`public` with the exact argument types of the statement's `hashtextextended(text, 0)` call is
preferred to pg_catalog's (which takes a bigint), and it sleeps on its first call only: the
statement that makes that call has taken its snapshot and not yet tried the key's lock. A fresh
app on the same database prepares its statements after the function exists.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.main import create_app
from tests.fixtures.accounts import Account
from tests.fixtures.app import make_settings
from tests.fixtures.tasks import create_task, is_trashed, key_row, task_row

pytestmark = pytest.mark.usefixtures("clean_tasks")

HELD_SECONDS = 1.0
SLOW_FIRST_CLAIM = f"""
CREATE FUNCTION public.hashtextextended(value text, seed integer) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF nextval('public.first_claim') = 1 THEN
        PERFORM pg_sleep({HELD_SECONDS});
    END IF;
    RETURN pg_catalog.hashtextextended(value, seed);
END
$$
"""


@pytest.fixture
async def held_retry_app(database_url: str, engine: AsyncEngine) -> AsyncIterator[FastAPI]:
    """An app whose first keyed statement pauses between its snapshot and its claim."""
    async with engine.begin() as connection:
        await connection.execute(text("CREATE SEQUENCE public.first_claim"))
        await connection.execute(text(SLOW_FIRST_CLAIM))
    try:
        application = create_app(make_settings(database_url))
        async with LifespanManager(application) as manager:
            yield manager.app  # type: ignore[misc]
    finally:
        async with engine.begin() as connection:
            await connection.execute(text("DROP FUNCTION public.hashtextextended(text, integer)"))
            await connection.execute(text("DROP SEQUENCE public.first_claim"))


async def _race(
    app: FastAPI, method: str, url: str, headers: dict[str, str], body: Any = None
) -> tuple[httpx.Response, httpx.Response]:
    """The same request twice: the first is held inside the window, the second runs through
    it and commits meanwhile."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:

        async def send() -> httpx.Response:
            return await http.request(method, url, headers=headers, json=body)

        held = asyncio.create_task(send())
        await asyncio.sleep(HELD_SECONDS / 3)
        first = await send()
        return first, await held


async def test_a_held_retry_of_a_create_with_a_chosen_id_replays_instead_of_409(
    held_retry_app: FastAPI, account: Account, engine: AsyncEngine
) -> None:
    task_id = str(uuid.uuid4())
    headers = {**account.headers, "Idempotency-Key": f"create-{task_id}"}

    first, retry = await _race(
        held_retry_app, "POST", account.tasks_url, headers, {"title": "offline", "id": task_id}
    )

    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    assert retry.status_code == 201, retry.text
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.content == first.content
    assert retry.headers["location"] == first.headers["location"]
    assert (await task_row(engine, task_id) or {})["title"] == "offline"


async def test_a_held_retry_of_a_conditional_toggle_replays_instead_of_412(
    held_retry_app: FastAPI, client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    task = await create_task(client, account)
    url = f"{account.tasks_url}/{task['id']}/complete"
    headers = {**account.headers, "If-Match": '"1"', "Idempotency-Key": f"toggle-{task['id']}"}

    first, retry = await _race(held_retry_app, "PATCH", url, headers)

    assert first.status_code == 200, first.text
    assert retry.status_code == 200, retry.text
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.content == first.content
    row = await task_row(engine, task["id"])
    assert row is not None
    assert (row["completed"], row["version"]) == (True, 2)  # toggled once


async def test_a_held_retry_of_a_delete_replays_instead_of_404(
    held_retry_app: FastAPI, client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    task = await create_task(client, account)
    url = f"{account.tasks_url}/{task['id']}"
    key = f"delete-{task['id']}"

    first, retry = await _race(
        held_retry_app, "DELETE", url, {**account.headers, "Idempotency-Key": key}
    )

    assert (first.status_code, retry.status_code) == (204, 204), retry.text
    assert retry.headers["idempotent-replayed"] == "true"
    assert await is_trashed(engine, task["id"])
    assert (await key_row(engine, account.id, key) or {})["status"] == 204
