"""Helpers for the accounts tests: users stored without argon2's cost, crafted tokens, the
401 contract, and the log lines the app writes."""

from __future__ import annotations

import functools
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth import passwords as security
from app.observability.logging import configure_logging
from tests.conftest import PASSWORD, TEST_JWT_SECRET, Account, LogOutput

ME_URL = "/api/auth/me"
SIGNUP_URL = "/api/auth/signup"
LOGIN_URL = "/api/auth/login"

UNAUTHENTICATED_BODIES = {
    "not_authenticated": {"detail": "Not authenticated", "code": "not_authenticated"},
    "invalid_token": {"detail": "Invalid or expired token", "code": "invalid_token"},
    "invalid_credentials": {
        "detail": "Incorrect email or password",
        "code": "invalid_credentials",
    },
}


def assert_unauthorized(response: httpx.Response, code: str) -> None:
    """A 401 with our error body for ``code`` and the challenge header RFC 6750 asks for."""
    assert response.status_code == 401, response.text
    assert response.json() == UNAUTHENTICATED_BODIES[code]
    assert response.headers["www-authenticate"] == "Bearer"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def claims_for(subject: uuid.UUID | str, **changes: object) -> dict[str, object]:
    """Claims the app accepts for ``subject``; ``changes`` override them (None drops one)."""
    now = int(time.time())
    claims: dict[str, object] = {"sub": str(subject), "iat": now, "exp": now + 600}
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def craft_token(
    claims: Mapping[str, object],
    *,
    key: str = TEST_JWT_SECRET,
    algorithm: str = "HS256",
) -> str:
    return jwt.encode(dict(claims), key, algorithm=algorithm)


@dataclass(frozen=True)
class StoredUser:
    id: uuid.UUID
    email: str
    password: str = PASSWORD


@functools.cache
def password_hash_of(password: str) -> str:
    """The app's own argon2id hash, computed once per run: argon2 costs ~0.1 s a call, and
    tests that are not about signing up need not pay for it again and again."""
    return security._password_hash.hash(password)


async def store_user(engine: AsyncEngine) -> StoredUser:
    """Write a user (password ``PASSWORD``) straight to the database, as signup would."""
    email = f"stored-{secrets.token_hex(6)}@example.com"
    async with engine.begin() as connection:
        user_id = (
            await connection.execute(
                text(
                    "INSERT INTO users (email, password_hash) VALUES (:email, :hash) RETURNING id"
                ),
                {"email": email, "hash": password_hash_of(PASSWORD)},
            )
        ).scalar_one()
    return StoredUser(id=user_id, email=email)


@pytest.fixture
async def stored_user(engine: AsyncEngine, clean_database: None) -> StoredUser:
    return await store_user(engine)


@pytest.fixture
async def logged_in(client: httpx.AsyncClient, stored_user: StoredUser) -> Account:
    """A stored user with a token from the real login endpoint (one argon2 verification,
    where the `account` fixture's signup + login costs two)."""
    response = await client.post(
        LOGIN_URL, json={"email": stored_user.email, "password": stored_user.password}
    )
    assert response.status_code == 200, response.text
    return Account(
        id=str(stored_user.id),
        email=stored_user.email,
        password=stored_user.password,
        token=response.json()["access_token"],
    )


_COUNT_ROWS = {table: text(f"SELECT count(*) FROM {table}") for table in ("users", "tasks")}  # noqa: S608


async def count_rows(engine: AsyncEngine, table: str) -> int:
    async with engine.connect() as connection:
        count: int = (await connection.execute(_COUNT_ROWS[table])).scalar_one()
    return count


class LogCapture(LogOutput):
    """The lines the app wrote (rendered and redacted as they would be printed)."""

    def access_lines(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.records() if r.get("event") == "request" and r["path"] == path]


@pytest.fixture
def app_logs(capsys: pytest.CaptureFixture[str]) -> LogCapture:
    """Everything logged during the test, as the app printed it. (structlog caches its
    loggers on first use, so ``structlog.testing.capture_logs`` cannot see the app's
    module-level loggers; the real output can.) The logging setup is the app's own (JSON
    lines), whatever an earlier test configured."""
    configure_logging("INFO", "json")
    return LogCapture(capsys)
