"""Tasks live in PostgreSQL, not in the process: a restarted app sees them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from asgi_lifespan import LifespanManager

from app.main import create_app
from app.settings import Settings
from tests.fixtures.accounts import Account
from tests.fixtures.tasks import create_task


@asynccontextmanager
async def _running_app(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A new app with its own engine and pool, for as long as the block lasts."""
    async with LifespanManager(create_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


async def test_tasks_are_still_there_after_the_app_restarts(
    settings: Settings, account: Account, clean_tasks: None
) -> None:
    async with _running_app(settings) as client:
        open_task = await create_task(client, account, "open", description="stays open")
        done = await create_task(client, account, "done")
        toggled = await client.patch(
            f"{account.tasks_url}/{done['id']}/complete", headers=account.headers
        )
        assert toggled.status_code == 200
        expected: list[dict[str, Any]] = [toggled.json(), open_task]
    # The first app's lifespan has ended: its engine and pool are disposed.

    async with _running_app(settings) as client:
        listed = await client.get(account.tasks_url, headers=account.headers)
        fetched = await client.get(
            f"{account.tasks_url}/{open_task['id']}", headers=account.headers
        )

    assert listed.status_code == 200
    assert listed.json() == expected
    assert fetched.json() == open_task
