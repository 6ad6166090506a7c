"""The edges of a session's life: a login racing a password change or the account's deletion,
a session past its absolute end with a token still alive, logout with an expired access token,
a same-origin SPA behind a proxy that rewrites Host, and a process whose notification listener
is down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx
import jwt
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth import service
from app.db import notifications
from app.main import create_app
from tests.fixtures.accounts import (
    LOGIN_URL,
    ME_URL,
    StoredUser,
    bearer,
    claims_for,
    craft_token,
)
from tests.fixtures.app import TEST_JWT_SECRET, make_settings
from tests.fixtures.sessions import (
    LOGOUT_URL,
    REFRESH_URL,
    SPA_HEADERS,
    age_sessions,
    browser_client,
    log_in,
    refresh_with,
    refused_within,
    session_rows,
)
from tests.fixtures.tcp_proxy import running_proxy

pytestmark = pytest.mark.usefixtures("clean_database")

Verify = Callable[[str, str | None], Awaitable[bool]]


def during_verification(
    monkeypatch: pytest.MonkeyPatch, engine: AsyncEngine, statement: str, user: StoredUser
) -> None:
    """Commit ``statement`` while the login verifies the password (argon2 takes ~0.1 s, and
    anything may commit meanwhile): deterministic, where two racing requests are not."""
    real: Verify = service.verify_password

    async def verify_then_commit(password: str, password_hash: str | None) -> bool:
        valid = await real(password, password_hash)
        async with engine.begin() as connection:
            await connection.execute(text(statement), {"id": user.id})
        return valid

    monkeypatch.setattr(service, "verify_password", verify_then_commit)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE users SET password_hash = 'changed meanwhile' WHERE id = :id",
        "DELETE FROM users WHERE id = :id",
    ],
    ids=["password-changed", "account-deleted"],
)
async def test_a_login_that_verified_the_old_password_starts_no_session(
    client: httpx.AsyncClient,
    stored_user: StoredUser,
    engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
    statement: str,
) -> None:
    during_verification(monkeypatch, engine, statement, stored_user)

    response = await client.post(
        LOGIN_URL, json={"email": stored_user.email, "password": stored_user.password}
    )

    assert response.status_code == 401, response.text
    assert response.json()["code"] == "invalid_credentials"
    assert "set-cookie" not in response.headers
    assert await session_rows(engine, stored_user.id) == []


async def test_a_refresh_near_the_absolute_end_issues_a_token_that_ends_with_the_session(
    client: httpx.AsyncClient, stored_user: StoredUser, engine: AsyncEngine
) -> None:
    signed_in = await log_in(client, stored_user, include_refresh_token=True)
    assert signed_in.refresh_token is not None
    await age_sessions(engine, stored_user.id, "expires_at = now() + interval '60 seconds'")

    response = await refresh_with(client, signed_in.refresh_token)

    assert response.status_code == 200, response.text
    assert response.json()["expires_in"] <= 60
    claims = jwt.decode(response.json()["access_token"], TEST_JWT_SECRET, algorithms=["HS256"])
    (row,) = await session_rows(engine, stored_user.id)
    assert claims["exp"] <= row["expires_at"].timestamp()  # type: ignore[attr-defined]


async def test_logout_ends_a_session_past_its_end_whose_token_still_lives(
    client: httpx.AsyncClient, stored_user: StoredUser, engine: AsyncEngine
) -> None:
    signed_in = await log_in(client, stored_user)
    await age_sessions(engine, stored_user.id, "expires_at = now() - interval '1 second'")

    response = await client.post(LOGOUT_URL, headers=signed_in.headers)

    assert response.status_code == 204, response.text
    await refused_within(client, signed_in.access_token)
    (row,) = await session_rows(engine, stored_user.id)
    assert row["ended_at"] is not None


async def test_logout_with_an_expired_access_token_and_the_cookie_ends_the_session(
    app: FastAPI, stored_user: StoredUser, engine: AsyncEngine
) -> None:
    async with browser_client(app) as browser:
        await browser.post(
            LOGIN_URL, json={"email": stored_user.email, "password": stored_user.password}
        )
        (row,) = await session_rows(engine, stored_user.id)
        expired = craft_token(
            claims_for(stored_user.id, sid=str(row["id"]), exp=int(time.time()) - 5)
        )

        response = await browser.post(LOGOUT_URL, headers={**bearer(expired), **SPA_HEADERS})
        refresh = await browser.post(REFRESH_URL, headers=SPA_HEADERS)

    assert response.status_code == 204, response.text
    assert refresh.status_code == 401
    (row,) = await session_rows(engine, stored_user.id)
    assert row["end_reason"] == "logout"


async def test_a_same_origin_spa_behind_a_proxy_that_rewrites_host_can_refresh(
    app: FastAPI, stored_user: StoredUser
) -> None:
    """Behind a proxy, Host (and the scheme) may be the upstream's, so Origin matches neither;
    Sec-Fetch-Site, which no page can set, says the request is the site's own."""
    async with browser_client(app) as browser:
        await browser.post(
            LOGIN_URL, json={"email": stored_user.email, "password": stored_user.password}
        )
        proxied = {**SPA_HEADERS, "Origin": "https://tasks.example.com", "Host": "127.0.0.1:8000"}

        refused = await browser.post(REFRESH_URL, headers=proxied)
        allowed = await browser.post(
            REFRESH_URL, headers={**proxied, "Sec-Fetch-Site": "same-origin"}
        )

    assert refused.status_code == 403
    assert allowed.status_code == 200, allowed.text


async def test_a_process_without_its_listener_for_long_is_not_ready_and_catches_up_after(
    database_url: str,
    stored_user: StoredUser,
    engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pool reaches the database, the LISTEN session (DATABASE_LISTEN_URL, through a
    proxy here) does not: readiness fails after the allowed time, and once the listener is
    back the sessions ended meanwhile are refused (reloaded, not notified)."""
    monkeypatch.setattr(notifications, "LOST_TOO_LONG_SECONDS", 0.5)
    async with running_proxy(database_url) as proxy:
        settings = make_settings(database_url, database_listen_url=proxy.url)
        async with LifespanManager(create_app(settings)) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                signed_in = await log_in(http, stored_user)
                await proxy.refuse()  # the listener's connection is cut and cannot come back
                await asyncio.sleep(1.0)

                not_ready = await http.get("/health/db")
                ended = await http.post(LOGOUT_URL, headers=signed_in.headers)
                still_accepted = await http.get(ME_URL, headers=signed_in.headers)
                await proxy.forward()
                await refused_within(http, signed_in.access_token, seconds=10.0)
                ready = await http.get("/health/db")

    assert not_ready.status_code == 503, not_ready.text
    assert not_ready.json()["detail"] == "Not listening for ended sessions and task changes"
    assert ended.status_code == 204
    # The documented gap: no notification reached this process while it was not listening.
    assert still_accepted.status_code == 200
    assert ready.status_code == 200, ready.text
