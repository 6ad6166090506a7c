"""Fixtures for the task tests.

Accounts cost two argon2 operations each (sign-up and login), so the task tests share a few
accounts, created once for this package through the real endpoints; only the `tasks` table is
emptied after each test. The users are removed when the package is done.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import Account, sign_up_via


@dataclass(frozen=True)
class Accounts:
    owner: Account
    stranger: Account


@pytest.fixture(scope="package")
async def accounts(app: FastAPI, engine: AsyncEngine) -> AsyncIterator[Accounts]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        run = uuid.uuid4().hex[:8]
        yield Accounts(
            owner=await sign_up_via(http, f"owner-{run}@example.com"),
            stranger=await sign_up_via(http, f"stranger-{run}@example.com"),
        )
    async with engine.begin() as connection:
        await connection.exec_driver_sql("TRUNCATE users, tasks CASCADE")


@pytest.fixture
async def clean_database(engine: AsyncEngine, accounts: Accounts) -> AsyncIterator[None]:
    """Overrides the suite's: keeps the package's accounts, empties `tasks` after the test."""
    yield
    async with engine.begin() as connection:
        await connection.exec_driver_sql("TRUNCATE tasks")


@pytest.fixture
def account(accounts: Accounts) -> Account:
    return accounts.owner


@pytest.fixture
def other_account(accounts: Accounts) -> Account:
    return accounts.stranger


async def task_row(engine: AsyncEngine, task_id: str | uuid.UUID) -> dict[str, Any] | None:
    """The task as stored, read on a connection of its own (what was committed)."""
    async with engine.connect() as connection:
        row = (
            (
                await connection.execute(
                    text("SELECT * FROM tasks WHERE id = :id"), {"id": uuid.UUID(str(task_id))}
                )
            )
            .mappings()
            .one_or_none()
        )
    return dict(row) if row is not None else None


async def task_count(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        count = await connection.scalar(text("SELECT count(*) FROM tasks"))
    assert isinstance(count, int)
    return count


async def create_task(
    client: httpx.AsyncClient, account: Account, title: str = "Buy milk", **fields: Any
) -> dict[str, Any]:
    response = await client.post(
        account.tasks_url, json={"title": title, **fields}, headers=account.headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def parse_time(value: str) -> datetime:
    """An ISO 8601 time that must carry a timezone."""
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() is not None, value
    return parsed
