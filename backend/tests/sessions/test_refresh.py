"""Refresh: the cookie a login sets, rotation, reuse detection and its grace window, expiry,
and the cross-site guard on the cookie (README "Authentication and sessions")."""

from __future__ import annotations

import asyncio
import time

import httpx
import jwt
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.accounts import LOGIN_URL, ME_URL, PASSWORD, SIGNUP_URL, StoredUser, bearer
from tests.fixtures.app import TEST_JWT_SECRET
from tests.fixtures.sessions import (
    OWN_ORIGIN,
    REFRESH_URL,
    SPA_HEADERS,
    age_sessions,
    browser_client,
    log_in,
    refresh_with,
    refused_within,
    session_rows,
)

pytestmark = pytest.mark.usefixtures("clean_database")

THIRTY_DAYS = 30 * 24 * 3600


def refresh_cookie(response: httpx.Response) -> str:
    (header,) = [h for h in response.headers.get_list("set-cookie") if "refresh_token=" in h]
    return header


def cookie_value(header: str) -> str:
    return header.split(";", 1)[0].split("=", 1)[1]


def assert_cleared(response: httpx.Response) -> None:
    header = refresh_cookie(response)
    assert cookie_value(header) in ("", '""')
    assert "Max-Age=0" in header
    assert "Path=/api/auth" in header


async def test_login_sets_an_httponly_secure_strict_cookie_scoped_to_the_auth_routes(
    browser: httpx.AsyncClient, stored_user: StoredUser
) -> None:
    response = await browser.post(
        LOGIN_URL, json={"email": stored_user.email, "password": stored_user.password}
    )

    assert response.status_code == 200, response.text
    header = refresh_cookie(response)
    attributes = {part.strip().split("=")[0].lower(): part for part in header.split(";")[1:]}
    assert {"httponly", "secure", "samesite", "path", "max-age"} <= set(attributes)
    assert attributes["samesite"].strip() == "SameSite=Strict"
    assert attributes["path"].strip() == "Path=/api/auth"
    assert THIRTY_DAYS - 60 <= int(attributes["max-age"].split("=")[1]) <= THIRTY_DAYS
    # In the cookie only: page script never sees it.
    assert response.json()["refresh_token"] is None
    assert cookie_value(header) not in response.text


async def test_signup_starts_a_session_too(browser: httpx.AsyncClient, engine: AsyncEngine) -> None:
    response = await browser.post(
        SIGNUP_URL, json={"email": "new@example.com", "password": PASSWORD}
    )

    assert response.status_code == 201, response.text
    assert refresh_cookie(response)
    me = await browser.get(ME_URL, headers=bearer(response.json()["access_token"]))
    assert me.status_code == 200, me.text
    assert len(await session_rows(engine, response.json()["id"])) == 1


async def test_the_access_token_names_its_session_and_lives_fifteen_minutes(
    client: httpx.AsyncClient, stored_user: StoredUser, engine: AsyncEngine
) -> None:
    signed_in = await log_in(client, stored_user)

    claims = jwt.decode(signed_in.access_token, TEST_JWT_SECRET, algorithms=["HS256"])
    (row,) = await session_rows(engine, stored_user.id)
    assert claims["sid"] == str(row["id"])
    assert claims["exp"] - claims["iat"] == 15 * 60


async def test_include_refresh_token_returns_the_cookie_s_token_in_the_body(
    browser: httpx.AsyncClient, stored_user: StoredUser
) -> None:
    response = await browser.post(
        LOGIN_URL,
        json={
            "email": stored_user.email,
            "password": stored_user.password,
            "include_refresh_token": True,
        },
    )

    assert response.json()["refresh_token"] == cookie_value(refresh_cookie(response))


async def test_a_cookie_refresh_rotates_the_cookie_and_returns_a_working_access_token(
    browser: httpx.AsyncClient, stored_user: StoredUser, engine: AsyncEngine
) -> None:
    login = await browser.post(
        LOGIN_URL, json={"email": stored_user.email, "password": stored_user.password}
    )
    first = cookie_value(refresh_cookie(login))

    response = await browser.post(REFRESH_URL, headers=SPA_HEADERS)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["refresh_token"] is None
    assert body["user"]["id"] == str(stored_user.id)
    second = cookie_value(refresh_cookie(response))
    assert second != first
    me = await browser.get(ME_URL, headers=bearer(body["access_token"]))
    assert me.status_code == 200, me.text
    # One session, renewed: the same sid, the next generation.
    (row,) = await session_rows(engine, stored_user.id)
    claims = jwt.decode(body["access_token"], TEST_JWT_SECRET, algorithms=["HS256"])
    assert claims["sid"] == str(row["id"])
    assert row["refresh_generation"] == 1


async def test_a_body_refresh_returns_the_new_refresh_token_in_the_body_and_sets_no_cookie(
    client: httpx.AsyncClient, stored_user: StoredUser
) -> None:
    signed_in = await log_in(client, stored_user, include_refresh_token=True)
    assert signed_in.refresh_token is not None

    response = await refresh_with(client, signed_in.refresh_token)

    assert response.status_code == 200, response.text
    renewed = response.json()["refresh_token"]
    assert renewed
    assert renewed != signed_in.refresh_token
    assert "set-cookie" not in response.headers
    again = await refresh_with(client, renewed)
    assert again.status_code == 200, again.text


async def test_the_database_holds_no_refresh_token(
    client: httpx.AsyncClient, stored_user: StoredUser, engine: AsyncEngine
) -> None:
    signed_in = await log_in(client, stored_user, include_refresh_token=True)
    assert signed_in.refresh_token is not None
    secret_part = signed_in.refresh_token.rsplit(".", 1)[1]

    (row,) = await session_rows(engine, stored_user.id)

    dumped = repr(row) + repr(
        {key: bytes(v).hex() for key, v in row.items() if isinstance(v, bytes | memoryview)}
    )
    assert secret_part not in dumped
    assert signed_in.refresh_token not in dumped


async def test_a_spent_token_presented_after_the_grace_window_ends_the_whole_session(
    client: httpx.AsyncClient, stored_user: StoredUser, engine: AsyncEngine
) -> None:
    signed_in = await log_in(client, stored_user, include_refresh_token=True)
    assert signed_in.refresh_token is not None
    renewed = await refresh_with(client, signed_in.refresh_token)
    assert renewed.status_code == 200, renewed.text
    newest = renewed.json()["refresh_token"]
    newest_access = renewed.json()["access_token"]
    await age_sessions(engine, stored_user.id, "rotated_at = now() - interval '31 seconds'")

    stolen = await refresh_with(client, signed_in.refresh_token)

    assert stolen.status_code == 401, stolen.text
    assert stolen.json() == {
        "detail": "This refresh token was already used; the session has been ended. Log in again",
        "code": "refresh_token_reused",
    }
    # Every token of the session is dead: the newest refresh token and both access tokens.
    after = await refresh_with(client, newest)
    assert after.status_code == 401
    assert after.json()["code"] == "invalid_refresh_token"
    await refused_within(client, newest_access)
    await refused_within(client, signed_in.access_token)
    (row,) = await session_rows(engine, stored_user.id)
    assert row["ended_at"] is not None
    assert row["end_reason"] == "refresh_token_reused"


async def test_an_older_generation_is_a_reuse_even_inside_the_grace_window(
    client: httpx.AsyncClient, stored_user: StoredUser, engine: AsyncEngine
) -> None:
    signed_in = await log_in(client, stored_user, include_refresh_token=True)
    assert signed_in.refresh_token is not None
    second = (await refresh_with(client, signed_in.refresh_token)).json()["refresh_token"]
    assert (await refresh_with(client, second)).status_code == 200

    response = await refresh_with(client, signed_in.refresh_token)  # two generations back

    assert response.status_code == 401
    assert response.json()["code"] == "refresh_token_reused"


async def test_concurrent_refreshes_with_one_token_all_succeed_with_the_same_new_token(
    client: httpx.AsyncClient, stored_user: StoredUser, engine: AsyncEngine
) -> None:
    """Tabs that wake up together all refresh with the cookie they share."""
    signed_in = await log_in(client, stored_user, include_refresh_token=True)
    assert signed_in.refresh_token is not None
    token = signed_in.refresh_token

    responses = await asyncio.gather(*(refresh_with(client, token) for _ in range(8)))

    assert [r.status_code for r in responses] == [200] * 8, [r.text for r in responses]
    assert len({r.json()["refresh_token"] for r in responses}) == 1
    (row,) = await session_rows(engine, stored_user.id)
    assert row["ended_at"] is None
    assert row["refresh_generation"] == 1
    # ...and the token they share keeps working.
    shared = responses[0].json()["refresh_token"]
    assert (await refresh_with(client, shared)).status_code == 200


async def test_the_grace_window_also_covers_a_late_tab(
    client: httpx.AsyncClient, stored_user: StoredUser, engine: AsyncEngine
) -> None:
    signed_in = await log_in(client, stored_user, include_refresh_token=True)
    assert signed_in.refresh_token is not None
    first = await refresh_with(client, signed_in.refresh_token)
    await age_sessions(engine, stored_user.id, "rotated_at = now() - interval '29 seconds'")

    late = await refresh_with(client, signed_in.refresh_token)

    assert late.status_code == 200, late.text
    assert late.json()["refresh_token"] == first.json()["refresh_token"]


@pytest.mark.parametrize(
    "assignment",
    [
        "last_used_at = now() - interval '7 days 1 minute'",  # idle for longer than 7 days
        "expires_at = now() - interval '1 second'",  # past the absolute lifetime
    ],
    ids=["idle", "absolute"],
)
async def test_an_expired_session_cannot_refresh_and_the_cookie_is_cleared(
    app: FastAPI, stored_user: StoredUser, engine: AsyncEngine, assignment: str
) -> None:
    async with browser_client(app) as browser:
        await browser.post(
            LOGIN_URL, json={"email": stored_user.email, "password": stored_user.password}
        )
        await age_sessions(engine, stored_user.id, assignment)

        response = await browser.post(REFRESH_URL, headers=SPA_HEADERS)

    assert response.status_code == 401, response.text
    assert response.json()["code"] == "invalid_refresh_token"
    assert response.headers["www-authenticate"] == "Bearer"
    assert_cleared(response)


async def test_the_session_absolute_lifetime_starts_at_login_and_idle_time_at_last_use(
    client: httpx.AsyncClient, stored_user: StoredUser, engine: AsyncEngine
) -> None:
    signed_in = await log_in(client, stored_user, include_refresh_token=True)
    assert signed_in.refresh_token is not None
    await age_sessions(engine, stored_user.id, "last_used_at = now() - interval '6 days'")

    assert (await refresh_with(client, signed_in.refresh_token)).status_code == 200

    (row,) = await session_rows(engine, stored_user.id)
    lifetime = row["expires_at"] - row["created_at"]  # type: ignore[operator]
    assert abs(lifetime.total_seconds() - THIRTY_DAYS) < 5
    assert time.time() - row["last_used_at"].timestamp() < 5  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "mangle",
    [
        lambda token: token[:-1] + ("A" if token[-1] != "A" else "B"),  # the MAC
        lambda token: token.replace(".0.", ".1.", 1),  # a generation not issued
        lambda token: "garbage",
        lambda token: token + "x",
    ],
    ids=["forged-mac", "forged-generation", "garbage", "too-long"],
)
async def test_a_forged_or_malformed_refresh_token_is_refused_and_ends_nothing(
    client: httpx.AsyncClient, stored_user: StoredUser, engine: AsyncEngine, mangle: object
) -> None:
    signed_in = await log_in(client, stored_user, include_refresh_token=True)
    assert signed_in.refresh_token is not None

    response = await refresh_with(client, mangle(signed_in.refresh_token))  # type: ignore[operator]

    assert response.status_code == 401, response.text
    assert response.json()["code"] == "invalid_refresh_token"
    (row,) = await session_rows(engine, stored_user.id)
    assert row["ended_at"] is None
    assert (await refresh_with(client, signed_in.refresh_token)).status_code == 200


async def test_a_refresh_without_a_token_is_401_invalid_refresh_token(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(REFRESH_URL, headers=SPA_HEADERS)

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_refresh_token"


@pytest.mark.parametrize(
    "headers",
    [
        {},  # no X-Requested-With: what a cross-site form sends
        {**SPA_HEADERS, "Origin": "https://evil.example"},
        {**SPA_HEADERS, "Origin": "null"},
        {**SPA_HEADERS, "Sec-Fetch-Site": "cross-site"},
    ],
    ids=["no-header", "foreign-origin", "null-origin", "fetch-metadata-cross-site"],
)
async def test_a_cookie_refresh_a_cross_site_page_could_send_is_403_and_spends_nothing(
    app: FastAPI, stored_user: StoredUser, engine: AsyncEngine, headers: dict[str, str]
) -> None:
    async with browser_client(app) as browser:
        await browser.post(
            LOGIN_URL, json={"email": stored_user.email, "password": stored_user.password}
        )

        refused = await browser.post(REFRESH_URL, headers=headers)
        allowed = await browser.post(REFRESH_URL, headers={**SPA_HEADERS, "Origin": OWN_ORIGIN})

    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "csrf_rejected"
    assert allowed.status_code == 200, allowed.text
    (row,) = await session_rows(engine, stored_user.id)
    assert row["refresh_generation"] == 1  # only the allowed refresh rotated
