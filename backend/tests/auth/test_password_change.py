"""POST /api/auth/password: the password changes, every other session ends with it, and the
current password is asked and counted like a login."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.repository import UserRepository
from app.db.database import Database
from app.main import create_app
from tests.fixtures.accounts import LOGIN_URL, ME_URL, SIGNUP_URL, StoredUser, bearer, store_user
from tests.fixtures.app import client_at, make_settings
from tests.fixtures.sessions import refused_within

PASSWORD_URL = "/api/auth/password"
REFRESH_URL = "/api/auth/refresh"
NEW_PASSWORD = "a quite different passphrase"
WRONG_PASSWORD = {"detail": "The password is incorrect", "code": "wrong_password"}

# The users a test leaves through `client` are deleted after it (see fixtures/app.py).
pytestmark = pytest.mark.usefixtures("clean_database")


@dataclass(frozen=True)
class Session:
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.access_token)


async def log_in(client: httpx.AsyncClient, email: str, password: str) -> Session:
    response = await client.post(
        LOGIN_URL, json={"email": email, "password": password, "include_refresh_token": True}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    return Session(body["access_token"], body["refresh_token"])


async def login_status(client: httpx.AsyncClient, email: str, password: str) -> int:
    response = await client.post(LOGIN_URL, json={"email": email, "password": password})
    return response.status_code


async def refresh(client: httpx.AsyncClient, session: Session) -> httpx.Response:
    return await client.post(REFRESH_URL, json={"refresh_token": session.refresh_token})


async def change(
    client: httpx.AsyncClient, session: Session, current: str, new: str = NEW_PASSWORD
) -> httpx.Response:
    return await client.post(
        PASSWORD_URL,
        json={"current_password": current, "new_password": new},
        headers=session.headers,
    )


async def password_hash(engine: AsyncEngine, user_id: uuid.UUID) -> str:
    async with engine.connect() as connection:
        value = await connection.scalar(
            text("SELECT password_hash FROM users WHERE id = :id"), {"id": user_id}
        )
    assert isinstance(value, str)
    return value


async def session_rows(engine: AsyncEngine, user_id: uuid.UUID) -> dict[str, dict[str, Any]]:
    """The user's sessions as stored, by the session id their refresh token starts with."""
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                text("SELECT id, ended_at, end_reason FROM sessions WHERE user_id = :id"),
                {"id": user_id},
            )
        ).mappings()
        return {row["id"].hex: dict(row) for row in rows}


def session_key(session: Session) -> str:
    return session.refresh_token.partition(".")[0]


async def test_the_new_password_logs_in_and_the_old_one_no_longer_does(
    client: httpx.AsyncClient, stored_user: StoredUser, engine: AsyncEngine
) -> None:
    caller = await log_in(client, stored_user.email, stored_user.password)
    before = await password_hash(engine, stored_user.id)

    response = await change(client, caller, stored_user.password)

    assert response.status_code == 204, response.text
    assert response.content == b""
    assert await password_hash(engine, stored_user.id) != before
    assert await login_status(client, stored_user.email, stored_user.password) == 401
    assert await login_status(client, stored_user.email, NEW_PASSWORD) == 200


async def test_every_other_session_ends_and_the_callers_goes_on(
    client: httpx.AsyncClient, stored_user: StoredUser, engine: AsyncEngine
) -> None:
    caller = await log_in(client, stored_user.email, stored_user.password)
    others = [await log_in(client, stored_user.email, stored_user.password) for _ in range(2)]
    someone_else = await store_user(engine)
    bystander = await log_in(client, someone_else.email, someone_else.password)

    response = await change(client, caller, stored_user.password)

    assert response.status_code == 204, response.text
    for other in others:
        await refused_within(client, other.access_token)
        refused = await client.get(ME_URL, headers=other.headers)
        assert refused.json()["code"] == "invalid_token"
        refused_refresh = await refresh(client, other)
        assert refused_refresh.status_code == 401, refused_refresh.text
        assert refused_refresh.json()["code"] == "invalid_refresh_token"
    assert (await client.get(ME_URL, headers=caller.headers)).status_code == 200
    assert (await refresh(client, caller)).status_code == 200
    assert (await client.get(ME_URL, headers=bystander.headers)).status_code == 200
    rows = await session_rows(engine, stored_user.id)
    assert rows[session_key(caller)]["ended_at"] is None
    for other in others:
        assert rows[session_key(other)]["ended_at"] is not None
        assert rows[session_key(other)]["end_reason"] == "password_changed"
    bystander_rows = await session_rows(engine, someone_else.id)
    assert bystander_rows[session_key(bystander)]["ended_at"] is None


async def test_a_wrong_current_password_is_403_and_changes_nothing(
    client: httpx.AsyncClient, stored_user: StoredUser, engine: AsyncEngine
) -> None:
    caller = await log_in(client, stored_user.email, stored_user.password)
    other = await log_in(client, stored_user.email, stored_user.password)
    before = await password_hash(engine, stored_user.id)

    response = await change(client, caller, "not the password")

    assert response.status_code == 403, response.text
    assert response.json() == WRONG_PASSWORD
    assert "www-authenticate" not in response.headers  # not a 401: the session is fine
    assert await password_hash(engine, stored_user.id) == before
    assert all(
        row["ended_at"] is None for row in (await session_rows(engine, stored_user.id)).values()
    )
    assert (await client.get(ME_URL, headers=other.headers)).status_code == 200
    assert await login_status(client, stored_user.email, stored_user.password) == 200


@pytest.mark.parametrize(
    ("new_password", "error_type"),
    [
        ("password123", "password_common"),
        ("klmn5678", "password_pattern"),
        ("{local}2024", "password_email"),
    ],
)
async def test_a_weak_new_password_is_refused_as_signup_refuses_it(
    client: httpx.AsyncClient,
    engine: AsyncEngine,
    new_password: str,
    error_type: str,
) -> None:
    email = f"weakling-{uuid.uuid4().hex[:8]}@example.com"
    user = await store_user(engine, email=email)
    caller = await log_in(client, user.email, user.password)
    new_password = new_password.format(local=email.partition("@")[0])
    before = await password_hash(engine, user.id)

    response = await change(client, caller, user.password, new_password)
    at_signup = await client.post(SIGNUP_URL, json={"email": email, "password": new_password})

    assert response.status_code == 422, response.text
    assert at_signup.status_code == 422, at_signup.text
    body, expected = response.json(), at_signup.json()
    assert body["code"] == "validation_error"
    [item] = body["errors"]
    [signup_item] = expected["errors"]
    assert item == {**signup_item, "loc": ["body", "new_password"]}
    assert item["type"] == error_type
    assert body["detail"] == "New " + expected["detail"].lower()
    assert await password_hash(engine, user.id) == before


async def test_a_too_short_new_password_is_refused_by_the_schema(
    client: httpx.AsyncClient, stored_user: StoredUser
) -> None:
    caller = await log_in(client, stored_user.email, stored_user.password)

    response = await change(client, caller, stored_user.password, "short")

    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [
        {
            "loc": ["body", "new_password"],
            "msg": "String should have at least 8 characters",
            "type": "string_too_short",
        }
    ]


async def test_without_a_token_it_is_401_and_nothing_is_checked(
    client: httpx.AsyncClient, stored_user: StoredUser, engine: AsyncEngine
) -> None:
    before = await password_hash(engine, stored_user.id)

    response = await client.post(
        PASSWORD_URL,
        json={"current_password": stored_user.password, "new_password": NEW_PASSWORD},
    )

    assert response.status_code == 401, response.text
    assert response.json() == {"detail": "Not authenticated", "code": "not_authenticated"}
    assert response.headers["www-authenticate"] == "Bearer"
    assert await password_hash(engine, stored_user.id) == before


async def test_two_changes_at_once_with_the_same_current_password_one_wins(
    client: httpx.AsyncClient, stored_user: StoredUser
) -> None:
    """The hash is replaced only if it is still the one the password was checked against, so
    two changes that both passed the check cannot both apply."""
    first = await log_in(client, stored_user.email, stored_user.password)
    second = await log_in(client, stored_user.email, stored_user.password)

    responses = await asyncio.gather(
        change(client, first, stored_user.password, "first new passphrase"),
        change(client, second, stored_user.password, "second new passphrase"),
    )

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [204, 403], [response.text for response in responses]
    winner = "first" if responses[0].status_code == 204 else "second"
    loser = "second" if winner == "first" else "first"
    assert await login_status(client, stored_user.email, f"{winner} new passphrase") == 200
    assert await login_status(client, stored_user.email, f"{loser} new passphrase") == 401


async def test_a_change_checked_against_a_hash_replaced_since_writes_nothing(
    client: httpx.AsyncClient, stored_user: StoredUser, engine: AsyncEngine, database: Database
) -> None:
    """What the loser of the race above meets, without the race: the stored hash is not the
    one the password was verified against, so neither the hash nor any session changes."""
    caller = await log_in(client, stored_user.email, stored_user.password)
    other = await log_in(client, stored_user.email, stored_user.password)
    before = await password_hash(engine, stored_user.id)

    ended = await UserRepository(database).change_password(
        stored_user.id,
        verified_hash=before + "-replaced-since",
        password_hash="not stored",
        keep_session=uuid.UUID(session_key(caller)),
    )

    assert ended is None
    assert await password_hash(engine, stored_user.id) == before
    assert (await session_rows(engine, stored_user.id))[session_key(other)]["ended_at"] is None


# --- the limits (an app of their own: the suite's shared app has them raised) --------------


@pytest.fixture
async def limited_app(database_url: str) -> AsyncIterator[FastAPI]:
    settings = make_settings(
        database_url,
        rate_limit_auth_per_address="4/minute",
        rate_limit_login_failures_per_account_and_address="2/minute",
    )
    async with LifespanManager(create_app(settings)) as manager:
        yield manager.app  # type: ignore[misc]


async def test_attempts_count_against_the_address_like_logins(
    limited_app: FastAPI, engine: AsyncEngine
) -> None:
    user = await store_user(engine)
    passwords = [user.password, "first new passphrase", "second new passphrase", "third one"]
    async with client_at(limited_app, "192.0.2.10") as limited:
        caller = await log_in(limited, user.email, user.password)  # the address's first attempt
        # Right passwords, so only the per-address limit (4/minute) can refuse them.
        statuses = [
            (await change(limited, caller, current, new)).status_code
            for current, new in itertools.pairwise(passwords)
        ]
        over = await change(limited, caller, passwords[-1])
    async with client_at(limited_app, "192.0.2.11") as elsewhere:
        refused_change_took_effect = await login_status(elsewhere, user.email, NEW_PASSWORD)
        last_password_works = await login_status(elsewhere, user.email, passwords[-1])

    assert statuses == [204, 204, 204]
    assert over.status_code == 429, over.text
    assert over.json()["code"] == "rate_limited"
    assert int(over.headers["Retry-After"]) >= 1
    assert refused_change_took_effect == 401
    assert last_password_works == 200


async def test_wrong_passwords_count_against_the_accounts_logins(
    limited_app: FastAPI, engine: AsyncEngine
) -> None:
    """Two failures from one address on one account refuse the third attempt from there,
    whichever route makes it: a stolen token is no way around the login limits."""
    user = await store_user(engine)
    async with client_at(limited_app, "192.0.2.20") as limited:
        caller = await log_in(limited, user.email, user.password)
        failures = [
            (await change(limited, caller, f"guess number {i}")).status_code for i in range(2)
        ]
        third = await change(limited, caller, user.password)
        login = await limited.post(LOGIN_URL, json={"email": user.email, "password": user.password})

    assert failures == [403, 403]
    assert third.status_code == 429, third.text
    assert third.json()["code"] == "rate_limited"
    assert login.status_code == 429, login.text


async def test_requests_without_a_token_cost_the_address_nothing(
    limited_app: FastAPI, engine: AsyncEngine
) -> None:
    user = await store_user(engine)
    async with client_at(limited_app, "192.0.2.30") as limited:
        anonymous = [
            (
                await limited.post(
                    PASSWORD_URL, json={"current_password": "x", "new_password": NEW_PASSWORD}
                )
            ).status_code
            for _ in range(6)
        ]
        login = await limited.post(LOGIN_URL, json={"email": user.email, "password": user.password})

    assert anonymous == [401] * 6
    assert login.status_code == 200, login.text
