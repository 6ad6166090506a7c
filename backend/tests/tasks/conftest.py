"""The task package's shared accounts.

Accounts cost two argon2 operations each (sign-up and login), so the task tests share two,
created once for this package through the real endpoints and deleted when the package is done.
A task test therefore requests clean_tasks (only `tasks` is emptied after it), never
clean_database, which would delete the shared users under the tests that follow.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.accounts import Account, sign_up_via
from tests.fixtures.database import empty_tables


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
        await empty_tables(connection, "TRUNCATE users, tasks, idempotency_keys CASCADE")


def _shared(request: pytest.FixtureRequest, account: Account) -> Account:
    # Fails the test at setup instead of letting clean_database delete the shared users.
    if "clean_database" in request.fixturenames:
        pytest.fail("a test that uses the package's shared accounts must request clean_tasks")
    return account


@pytest.fixture
def account(accounts: Accounts, request: pytest.FixtureRequest) -> Account:
    """The package's shared account that owns the tasks under test."""
    return _shared(request, accounts.owner)


@pytest.fixture
def other_account(accounts: Accounts, request: pytest.FixtureRequest) -> Account:
    """The package's other shared account, whose tasks the first must never reach."""
    return _shared(request, accounts.stranger)
