"""Logout, the session list, and ending one or all other sessions: each ended session's tokens
stop working, and only the user's own sessions are ever listed or ended."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.accounts import LOGIN_URL, ME_URL, StoredUser, bearer, store_user
from tests.fixtures.sessions import (
    LOGOUT_URL,
    REFRESH_URL,
    SESSIONS_URL,
    SPA_HEADERS,
    browser_client,
    log_in,
    refresh_with,
    refused_within,
    session_rows,
)

pytestmark = pytest.mark.usefixtures("clean_database")


async def test_logout_with_the_bearer_token_ends_the_session_and_clears_the_cookie(
    app: FastAPI, stored_user: StoredUser, engine: AsyncEngine
) -> None:
    async with browser_client(app) as browser:
        login = await browser.post(
            LOGIN_URL, json={"email": stored_user.email, "password": stored_user.password}
        )
        access = login.json()["access_token"]

        response = await browser.post(LOGOUT_URL, headers=bearer(access))

        assert response.status_code == 204, response.text
        assert response.content == b""
        assert "Max-Age=0" in response.headers["set-cookie"]
        assert "refresh_token" not in browser.cookies
        await refused_within(browser, access)
        refresh = await browser.post(REFRESH_URL, headers=SPA_HEADERS)
        assert refresh.status_code == 401
    (row,) = await session_rows(engine, stored_user.id)
    assert (row["end_reason"], row["ended_at"] is not None) == ("logout", True)


async def test_logout_with_the_cookie_alone_ends_the_session(
    app: FastAPI, stored_user: StoredUser, engine: AsyncEngine
) -> None:
    """An SPA whose access token has expired can still log out."""
    async with browser_client(app) as browser:
        await browser.post(
            LOGIN_URL, json={"email": stored_user.email, "password": stored_user.password}
        )
        cookie = browser.cookies["refresh_token"]

        refused = await browser.post(LOGOUT_URL)  # no X-Requested-With: the CSRF guard
        response = await browser.post(LOGOUT_URL, headers=SPA_HEADERS)

        assert refused.status_code == 403
        assert response.status_code == 204, response.text
        again = await refresh_with(browser, cookie)
    assert again.status_code == 401
    (row,) = await session_rows(engine, stored_user.id)
    assert row["ended_at"] is not None


async def test_logout_with_a_body_refresh_token_ends_that_session(
    client: httpx.AsyncClient, stored_user: StoredUser, engine: AsyncEngine
) -> None:
    signed_in = await log_in(client, stored_user, include_refresh_token=True)

    response = await client.post(LOGOUT_URL, json={"refresh_token": signed_in.refresh_token})

    assert response.status_code == 204, response.text
    await refused_within(client, signed_in.access_token)
    (row,) = await session_rows(engine, stored_user.id)
    assert row["ended_at"] is not None


async def test_logout_twice_is_204_and_without_any_credential_401(
    client: httpx.AsyncClient, stored_user: StoredUser
) -> None:
    signed_in = await log_in(client, stored_user, include_refresh_token=True)
    body = {"refresh_token": signed_in.refresh_token}

    assert (await client.post(LOGOUT_URL, json=body)).status_code == 204
    assert (await client.post(LOGOUT_URL, json=body)).status_code == 204
    anonymous = await client.post(LOGOUT_URL)
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "not_authenticated"
    forged = await client.post(LOGOUT_URL, json={"refresh_token": "garbage"})
    assert forged.status_code == 401
    assert forged.json()["code"] == "invalid_refresh_token"


async def test_the_list_shows_the_user_s_usable_sessions_and_marks_the_caller_s(
    app: FastAPI, stored_user: StoredUser, engine: AsyncEngine
) -> None:
    async with (
        browser_client(app, user_agent="Phone/1.0") as phone,
        browser_client(app, user_agent="Laptop/2.0") as laptop,
    ):
        on_phone = await log_in(phone, stored_user)
        on_laptop = await log_in(laptop, stored_user)
        ended = await log_in(laptop, stored_user)
        assert (await laptop.post(LOGOUT_URL, headers=ended.headers)).status_code == 204

        response = await laptop.get(SESSIONS_URL, headers=on_laptop.headers)

    assert response.status_code == 200, response.text
    sessions = response.json()
    assert len(sessions) == 2  # the ended one is not listed
    assert set(sessions[0]) == {
        "id",
        "created_at",
        "last_used_at",
        "expires_at",
        "user_agent",
        "address",
        "current",
    }
    by_agent = {session["user_agent"]: session for session in sessions}
    assert by_agent["Laptop/2.0"]["current"] is True
    assert by_agent["Phone/1.0"]["current"] is False
    # The address is a network, not the host (the in-process client is 127.0.0.1).
    assert by_agent["Phone/1.0"]["address"] == "127.0.0.0/24"
    assert on_phone.access_token != on_laptop.access_token


async def test_a_user_never_sees_or_ends_another_user_s_session(
    client: httpx.AsyncClient, stored_user: StoredUser, engine: AsyncEngine
) -> None:
    other_user = await store_user(engine)
    mine = await log_in(client, stored_user)
    theirs = await log_in(client, other_user)
    (their_row,) = await session_rows(engine, other_user.id)

    listed = await client.get(SESSIONS_URL, headers=mine.headers)
    ended = await client.delete(f"{SESSIONS_URL}/{their_row['id']}", headers=mine.headers)
    ended_all = await client.delete(SESSIONS_URL, headers=mine.headers)

    (my_row,) = await session_rows(engine, stored_user.id)
    assert [session["id"] for session in listed.json()] == [str(my_row["id"])]
    assert len(listed.json()) == 1
    assert ended.status_code == 404
    assert ended.json() == {"detail": "Session not found", "code": "session_not_found"}
    assert ended_all.status_code == 204
    assert (await client.get(ME_URL, headers=theirs.headers)).status_code == 200
    (their_row_after,) = await session_rows(engine, other_user.id)
    assert their_row_after["ended_at"] is None


async def test_ending_one_session_refuses_its_tokens_and_leaves_the_others(
    client: httpx.AsyncClient, stored_user: StoredUser, engine: AsyncEngine
) -> None:
    mine = await log_in(client, stored_user)
    lost_phone = await log_in(client, stored_user, include_refresh_token=True)
    listed = (await client.get(SESSIONS_URL, headers=mine.headers)).json()
    (phone,) = [session for session in listed if not session["current"]]

    response = await client.delete(f"{SESSIONS_URL}/{phone['id']}", headers=mine.headers)

    assert response.status_code == 204, response.text
    await refused_within(client, lost_phone.access_token)
    assert lost_phone.refresh_token is not None
    assert (await refresh_with(client, lost_phone.refresh_token)).status_code == 401
    assert (await client.get(ME_URL, headers=mine.headers)).status_code == 200
    again = await client.delete(f"{SESSIONS_URL}/{phone['id']}", headers=mine.headers)
    assert again.status_code == 404
    unknown = await client.delete(f"{SESSIONS_URL}/{uuid.uuid4()}", headers=mine.headers)
    assert unknown.status_code == 404


async def test_ending_all_other_sessions_keeps_only_the_caller_s(
    client: httpx.AsyncClient, stored_user: StoredUser, engine: AsyncEngine
) -> None:
    mine = await log_in(client, stored_user)
    others = [await log_in(client, stored_user, include_refresh_token=True) for _ in range(3)]

    response = await client.delete(SESSIONS_URL, headers=mine.headers)

    assert response.status_code == 204, response.text
    for other in others:
        await refused_within(client, other.access_token)
        assert other.refresh_token is not None
        assert (await refresh_with(client, other.refresh_token)).status_code == 401
    listed = (await client.get(SESSIONS_URL, headers=mine.headers)).json()
    assert [session["current"] for session in listed] == [True]
    rows = await session_rows(engine, stored_user.id)
    assert sorted(row["ended_at"] is None for row in rows) == [False, False, False, True]


async def test_the_session_routes_need_a_bearer_token(client: httpx.AsyncClient) -> None:
    for method, url in (
        ("GET", SESSIONS_URL),
        ("DELETE", SESSIONS_URL),
        ("DELETE", f"{SESSIONS_URL}/{uuid.uuid4()}"),
    ):
        response = await client.request(method, url)
        assert response.status_code == 401, (method, url)
        assert response.json()["code"] == "not_authenticated"


@pytest.mark.parametrize("url", [LOGOUT_URL, REFRESH_URL])
async def test_a_json_null_body_is_422_not_an_empty_body(
    client: httpx.AsyncClient, stored_user: StoredUser, url: str
) -> None:
    signed_in = await log_in(client, stored_user)

    response = await client.post(
        url, content=b"null", headers={**signed_in.headers, "Content-Type": "application/json"}
    )

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    assert (await client.get(ME_URL, headers=signed_in.headers)).status_code == 200
