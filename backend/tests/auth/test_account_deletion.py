"""DELETE /api/auth/me: the account goes with its tasks, sessions and idempotency keys, after
the password is asked and counted like a login, and no token of it works afterwards."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.repository import UserRepository
from app.db.database import Database
from app.main import create_app
from tests.fixtures.accounts import LOGIN_URL, ME_URL, StoredUser, bearer, store_user
from tests.fixtures.app import client_at, make_settings

DELETE_URL = ME_URL
REFRESH_URL = "/api/auth/refresh"

# The users a test leaves through `client` are deleted after it (see fixtures/app.py).
pytestmark = pytest.mark.usefixtures("clean_database")


async def log_in(client: httpx.AsyncClient, user: StoredUser) -> dict[str, str]:
    """A new session: its access and refresh tokens."""
    response = await client.post(
        LOGIN_URL,
        json={"email": user.email, "password": user.password, "include_refresh_token": True},
    )
    assert response.status_code == 200, response.text
    body: dict[str, str] = response.json()
    return body


async def delete_account(
    client: httpx.AsyncClient, access_token: str, password: str
) -> httpx.Response:
    return await client.request(
        "DELETE", DELETE_URL, json={"password": password}, headers=bearer(access_token)
    )


async def add_tasks(client: httpx.AsyncClient, user: StoredUser, token: str, count: int) -> None:
    """``count`` tasks, each created with an Idempotency-Key (so the account has stored
    answers too)."""
    for i in range(count):
        response = await client.post(
            f"/api/{user.id}/tasks",
            json={"title": f"task {i}"},
            headers={**bearer(token), "Idempotency-Key": f"add-{i}"},
        )
        assert response.status_code == 201, response.text


async def rows_of(engine: AsyncEngine, user_id: uuid.UUID) -> dict[str, int]:
    """How many rows of each table belong to the user."""
    async with engine.connect() as connection:
        counts = (
            await connection.execute(
                text(
                    "SELECT (SELECT count(*) FROM users WHERE id = :id) AS users,"
                    " (SELECT count(*) FROM tasks WHERE user_id = :id) AS tasks,"
                    " (SELECT count(*) FROM sessions WHERE user_id = :id) AS sessions,"
                    " (SELECT count(*) FROM idempotency_keys WHERE user_id = :id) AS keys"
                ),
                {"id": user_id},
            )
        ).one()
    return dict(counts._mapping)


async def test_the_account_its_tasks_and_its_sessions_are_deleted(
    client: httpx.AsyncClient, stored_user: StoredUser, engine: AsyncEngine
) -> None:
    session = await log_in(client, stored_user)
    await log_in(client, stored_user)
    await add_tasks(client, stored_user, session["access_token"], 3)
    assert await rows_of(engine, stored_user.id) == {
        "users": 1,
        "tasks": 3,
        "sessions": 2,
        "keys": 3,
    }

    response = await delete_account(client, session["access_token"], stored_user.password)

    assert response.status_code == 204, response.text
    assert response.content == b""
    # The stored answers (copies of the tasks) go with it, in the same statement.
    assert await rows_of(engine, stored_user.id) == {
        "users": 0,
        "tasks": 0,
        "sessions": 0,
        "keys": 0,
    }


async def test_the_refresh_cookie_is_cleared(
    client: httpx.AsyncClient, stored_user: StoredUser
) -> None:
    session = await log_in(client, stored_user)

    response = await delete_account(client, session["access_token"], stored_user.password)

    assert response.status_code == 204, response.text
    cookie = response.headers["set-cookie"]
    assert cookie.startswith('refresh_token=""; ')
    assert "Max-Age=0" in cookie
    assert "Path=/api/auth" in cookie
    assert "HttpOnly" in cookie


async def test_every_token_of_the_account_is_refused_afterwards(
    client: httpx.AsyncClient, stored_user: StoredUser
) -> None:
    caller = await log_in(client, stored_user)
    other = await log_in(client, stored_user)
    tasks_url = f"/api/{stored_user.id}/tasks"

    response = await delete_account(client, caller["access_token"], stored_user.password)

    assert response.status_code == 204, response.text
    for session in (caller, other):
        headers = bearer(session["access_token"])
        refused = [
            await client.get(ME_URL, headers=headers),
            await client.get(tasks_url, headers=headers),
            await client.post(tasks_url, json={"title": "after"}, headers=headers),
            await client.get(f"{tasks_url}/{uuid.uuid4()}", headers=headers),
            await delete_account(client, session["access_token"], stored_user.password),
        ]
        for answer in refused:
            assert answer.status_code == 401, (answer.request.url, answer.text)
            assert answer.json()["code"] == "invalid_token"
        renewal = await client.post(REFRESH_URL, json={"refresh_token": session["refresh_token"]})
        assert renewal.status_code == 401, renewal.text
        assert renewal.json()["code"] == "invalid_refresh_token"
    login = await client.post(
        LOGIN_URL, json={"email": stored_user.email, "password": stored_user.password}
    )
    assert login.status_code == 401, login.text


async def test_another_users_account_tasks_and_sessions_are_untouched(
    client: httpx.AsyncClient, stored_user: StoredUser, engine: AsyncEngine
) -> None:
    someone_else = await store_user(engine)
    theirs = await log_in(client, someone_else)
    await add_tasks(client, someone_else, theirs["access_token"], 2)
    mine = await log_in(client, stored_user)
    await add_tasks(client, stored_user, mine["access_token"], 2)

    response = await delete_account(client, mine["access_token"], stored_user.password)

    assert response.status_code == 204, response.text
    assert await rows_of(engine, someone_else.id) == {
        "users": 1,
        "tasks": 2,
        "sessions": 1,
        "keys": 2,
    }
    listed = await client.get(
        f"/api/{someone_else.id}/tasks", headers=bearer(theirs["access_token"])
    )
    assert listed.status_code == 200, listed.text
    assert len(listed.json()) == 2


async def test_a_wrong_password_is_403_and_deletes_nothing(
    client: httpx.AsyncClient, stored_user: StoredUser, engine: AsyncEngine
) -> None:
    session = await log_in(client, stored_user)
    await add_tasks(client, stored_user, session["access_token"], 2)

    response = await delete_account(client, session["access_token"], "not the password")

    assert response.status_code == 403, response.text
    assert response.json() == {"detail": "The password is incorrect", "code": "wrong_password"}
    assert "set-cookie" not in response.headers
    assert await rows_of(engine, stored_user.id) == {
        "users": 1,
        "tasks": 2,
        "sessions": 1,
        "keys": 2,
    }
    me = await client.get(ME_URL, headers=bearer(session["access_token"]))
    assert me.status_code == 200, me.text


async def test_without_a_token_it_is_401_and_deletes_nothing(
    client: httpx.AsyncClient, stored_user: StoredUser, engine: AsyncEngine
) -> None:
    response = await client.request("DELETE", DELETE_URL, json={"password": stored_user.password})

    assert response.status_code == 401, response.text
    assert response.json() == {"detail": "Not authenticated", "code": "not_authenticated"}
    assert await rows_of(engine, stored_user.id) == {
        "users": 1,
        "tasks": 0,
        "sessions": 0,
        "keys": 0,
    }


async def test_without_the_password_it_is_422_and_deletes_nothing(
    client: httpx.AsyncClient, stored_user: StoredUser, engine: AsyncEngine
) -> None:
    session = await log_in(client, stored_user)

    response = await client.request("DELETE", DELETE_URL, headers=bearer(session["access_token"]))

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    assert await rows_of(engine, stored_user.id) == {
        "users": 1,
        "tasks": 0,
        "sessions": 1,
        "keys": 0,
    }


async def test_a_deletion_checked_against_a_hash_replaced_since_deletes_nothing(
    stored_user: StoredUser, engine: AsyncEngine, database: Database
) -> None:
    """A password change between the check and the delete (say, by the owner who noticed a
    stolen token) wins: the delete finds no row with the hash it verified against."""
    deleted = await UserRepository(database).delete(stored_user.id, verified_hash="replaced")

    assert deleted is False
    assert await rows_of(engine, stored_user.id) == {
        "users": 1,
        "tasks": 0,
        "sessions": 0,
        "keys": 0,
    }


@pytest.fixture
async def limited_app(database_url: str) -> AsyncIterator[FastAPI]:
    """The suite's shared app has the limits raised; this one has them low."""
    settings = make_settings(
        database_url, rate_limit_login_failures_per_account_and_address="2/minute"
    )
    async with LifespanManager(create_app(settings)) as manager:
        yield manager.app  # type: ignore[misc]


async def test_password_guesses_are_limited_like_logins(
    limited_app: FastAPI, stored_user: StoredUser, engine: AsyncEngine
) -> None:
    async with client_at(limited_app, "192.0.2.40") as limited:
        session = await log_in(limited, stored_user)
        guesses = [
            (await delete_account(limited, session["access_token"], f"guess {i}")).status_code
            for i in range(2)
        ]
        right_but_late = await delete_account(
            limited, session["access_token"], stored_user.password
        )

    assert guesses == [403, 403]
    assert right_but_late.status_code == 429, right_but_late.text
    assert right_but_late.json()["code"] == "rate_limited"
    assert int(right_but_late.headers["Retry-After"]) >= 1
    assert (await rows_of(engine, stored_user.id))["users"] == 1
