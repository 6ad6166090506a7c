"""Concurrent toggles of one task: each is one atomic statement, so none is lost."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.database import Database
from app.tasks.repository import TaskRepository
from tests.fixtures.accounts import Account
from tests.fixtures.tasks import create_task, task_row

# Every test here writes tasks for the package's shared accounts (see conftest.py).
pytestmark = pytest.mark.usefixtures("clean_tasks")

TIMEOUT_SECONDS = 30


@pytest.mark.parametrize("toggles", [50, 51])
async def test_concurrent_toggles_through_the_api_end_in_the_state_their_count_predicts(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine, toggles: int
) -> None:
    created = await create_task(client, account)
    url = f"{account.tasks_url}/{created['id']}/complete"

    async with asyncio.timeout(TIMEOUT_SECONDS):
        responses = await asyncio.gather(
            *(client.patch(url, headers=account.headers) for _ in range(toggles))
        )

    assert [r.status_code for r in responses] == [200] * toggles
    # Serialised toggles from "open" answer open/completed alternately: one of each state
    # per pair, so a lost update would show up as a missing "completed" answer.
    answers = [r.json()["completed"] for r in responses]
    assert answers.count(True) == (toggles + 1) // 2
    expected = toggles % 2 == 1
    row = await task_row(engine, created["id"])
    assert row is not None
    assert row["completed"] is expected
    assert (row["completed_at"] is not None) is expected


@pytest.mark.parametrize("toggles", [50, 51])
async def test_concurrent_toggles_on_separate_connections_lose_none(
    engine: AsyncEngine, database: Database, account: Account, toggles: int
) -> None:
    tasks = TaskRepository(database, uuid.UUID(account.id))
    task = await tasks.create(title="flip me")

    async with asyncio.timeout(TIMEOUT_SECONDS):
        # Each toggle checks out its own pooled connection: up to 20 at once.
        results = await asyncio.gather(*(tasks.toggle(task["id"]) for _ in range(toggles)))

    assert [t["completed"] for t in results].count(True) == (toggles + 1) // 2
    expected = toggles % 2 == 1
    row = await task_row(engine, task["id"])
    assert row is not None
    assert row["completed"] is expected
    assert (row["completed_at"] is not None) is expected
