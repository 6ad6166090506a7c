"""Sign-up, login and /me through HTTP against the real app and database."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import datetime

import httpx
import pytest
from pwdlib import PasswordHash
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth import passwords as security
from tests.fixtures.accounts import (
    LOGIN_URL,
    ME_URL,
    PASSWORD,
    SIGNUP_URL,
    USER_FIELDS,
    StoredUser,
    assert_token_response,
    assert_unauthorized,
    bearer,
    count_rows,
)

# The users and tasks a test leaves through `client` are deleted after it (see fixtures/app.py).
pytestmark = pytest.mark.usefixtures("clean_database")


async def fetch_user_row(engine: AsyncEngine, email: str) -> dict[str, object] | None:
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                text(
                    "SELECT id, email, password_hash, name, created_at FROM users WHERE email = :e"
                ),
                {"e": email},
            )
        ).one_or_none()
    return None if row is None else dict(row._mapping)


# --- signup ------------------------------------------------------------------------------


async def test_signup_returns_the_user_without_any_password_material(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    response = await client.post(
        SIGNUP_URL, json={"email": "ada@example.com", "password": PASSWORD, "name": "Ada"}
    )

    assert response.status_code == 201, response.text
    body = response.json()
    # The user's fields as before sessions, plus the tokens of the session signup started.
    assert set(body) == USER_FIELDS | {"access_token", "token_type", "expires_in", "refresh_token"}
    assert body["refresh_token"] is None  # in the cookie only, unless asked for
    assert body["email"] == "ada@example.com"
    assert body["name"] == "Ada"
    assert PASSWORD not in response.text
    assert "argon2" not in response.text
    row = await fetch_user_row(engine, "ada@example.com")
    assert row is not None
    assert str(row["id"]) == body["id"]
    assert row["name"] == "Ada"
    assert row["created_at"] == datetime.fromisoformat(body["created_at"])


async def test_signup_stores_only_an_argon2id_hash_of_the_password(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    response = await client.post(SIGNUP_URL, json={"email": "h@example.com", "password": PASSWORD})

    assert response.status_code == 201, response.text
    row = await fetch_user_row(engine, "h@example.com")
    assert row is not None
    stored = str(row["password_hash"])
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    assert PasswordHash.recommended().verify(PASSWORD, stored)


async def test_signup_lowercases_the_email(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    response = await client.post(
        SIGNUP_URL, json={"email": "Mixed.Case@Example.IO", "password": PASSWORD}
    )

    assert response.status_code == 201, response.text
    assert response.json()["email"] == "mixed.case@example.io"
    assert await fetch_user_row(engine, "mixed.case@example.io") is not None


@pytest.mark.parametrize(
    ("first", "second"),
    [("A@x.io", "a@x.io"), ("a@x.io", "A@X.IO"), ("same@x.io", "same@x.io")],
)
async def test_signup_with_a_taken_email_in_any_case_is_409_email_taken(
    client: httpx.AsyncClient, engine: AsyncEngine, first: str, second: str
) -> None:
    created = await client.post(SIGNUP_URL, json={"email": first, "password": PASSWORD})
    assert created.status_code == 201, created.text
    before = await fetch_user_row(engine, first.lower())

    duplicate = await client.post(SIGNUP_URL, json={"email": second, "password": "other-password"})

    assert duplicate.status_code == 409, duplicate.text
    assert duplicate.json() == {
        "detail": "An account with this email already exists",
        "code": "email_taken",
    }
    assert await count_rows(engine, "users") == 1
    assert await fetch_user_row(engine, first.lower()) == before


async def test_concurrent_signups_for_one_email_create_one_account_and_one_409(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    first, second = await asyncio.gather(
        client.post(SIGNUP_URL, json={"email": "race@x.io", "password": PASSWORD}),
        client.post(SIGNUP_URL, json={"email": "RACE@x.io", "password": PASSWORD}),
    )

    assert sorted([first.status_code, second.status_code]) == [201, 409], (first, second)
    [created] = [r for r in (first, second) if r.status_code == 201]
    [refused] = [r for r in (first, second) if r.status_code == 409]
    assert refused.json()["code"] == "email_taken"
    assert await count_rows(engine, "users") == 1
    row = await fetch_user_row(engine, "race@x.io")
    assert row is not None
    assert str(row["id"]) == created.json()["id"]


@pytest.mark.parametrize(
    "email", ["not-an-email", "a@", "@x.io", "a b@x.io", "a@x@y.io", "", "a" * 250 + "@x.io"]
)
async def test_signup_with_an_invalid_email_is_422(
    client: httpx.AsyncClient, engine: AsyncEngine, email: str
) -> None:
    response = await client.post(SIGNUP_URL, json={"email": email, "password": PASSWORD})

    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "validation_error"
    assert [error["loc"] for error in body["errors"]] == [["body", "email"]]
    assert await count_rows(engine, "users") == 0


@pytest.mark.parametrize("length", [7, 129, 0])
async def test_signup_with_a_password_outside_8_to_128_characters_is_422(
    client: httpx.AsyncClient, engine: AsyncEngine, length: int
) -> None:
    password = "p" * length
    response = await client.post(SIGNUP_URL, json={"email": "p@x.io", "password": password})

    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "validation_error"
    assert [error["loc"] for error in body["errors"]] == [["body", "password"]]
    if length:
        assert password not in response.text
    assert await count_rows(engine, "users") == 0


@pytest.mark.parametrize("length", [8, 128])
async def test_signup_accepts_passwords_of_8_and_128_characters_and_they_log_in(
    client: httpx.AsyncClient, length: int
) -> None:
    # Multi-byte characters: the bound is on characters, not bytes (and drawn at random from a
    # few, so the password is no simple pattern for the policy to refuse).
    password = "".join(random.Random(length).choices("éàüøπλжю", k=length))
    created = await client.post(SIGNUP_URL, json={"email": "b@x.io", "password": password})
    assert created.status_code == 201, created.text

    login = await client.post(LOGIN_URL, json={"email": "b@x.io", "password": password})

    assert login.status_code == 200, login.text
    assert login.json()["user"]["id"] == created.json()["id"]


async def test_signup_without_a_name_stores_null(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    response = await client.post(SIGNUP_URL, json={"email": "n@x.io", "password": PASSWORD})

    assert response.status_code == 201, response.text
    assert response.json()["name"] is None
    row = await fetch_user_row(engine, "n@x.io")
    assert row is not None
    assert row["name"] is None


@pytest.mark.parametrize(
    "body",
    [
        {"password": PASSWORD},
        {"email": "x@x.io"},
        {"email": "x@x.io", "password": PASSWORD, "name": ""},
    ],
    ids=["no-email", "no-password", "empty-name"],
)
async def test_signup_with_missing_or_empty_fields_is_422(
    client: httpx.AsyncClient, engine: AsyncEngine, body: dict[str, str]
) -> None:
    response = await client.post(SIGNUP_URL, json=body)

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    assert await count_rows(engine, "users") == 0


async def test_signup_ignores_a_client_supplied_id(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    chosen = str(uuid.uuid4())
    response = await client.post(
        SIGNUP_URL, json={"id": chosen, "email": "i@x.io", "password": PASSWORD}
    )

    assert response.status_code == 201, response.text
    assert response.json()["id"] != chosen
    row = await fetch_user_row(engine, "i@x.io")
    assert row is not None
    assert str(row["id"]) == response.json()["id"]


# --- login -------------------------------------------------------------------------------


async def test_login_with_json_returns_a_bearer_token_for_the_user(
    client: httpx.AsyncClient, stored_user: StoredUser
) -> None:
    response = await client.post(
        LOGIN_URL, json={"email": stored_user.email, "password": stored_user.password}
    )

    assert response.status_code == 200, response.text
    assert_token_response(response.json(), stored_user)


async def test_login_matches_the_email_case_insensitively(
    client: httpx.AsyncClient, stored_user: StoredUser
) -> None:
    email = stored_user.email.upper()
    response = await client.post(LOGIN_URL, json={"email": email, "password": stored_user.password})

    assert response.status_code == 200, response.text
    assert response.json()["user"]["id"] == str(stored_user.id)


async def test_login_wrong_password_and_unknown_email_get_the_same_401(
    client: httpx.AsyncClient, stored_user: StoredUser
) -> None:
    wrong_password = await client.post(
        LOGIN_URL, json={"email": stored_user.email, "password": "not the password"}
    )
    unknown_email = await client.post(
        LOGIN_URL, json={"email": "nobody@example.com", "password": stored_user.password}
    )

    assert_unauthorized(wrong_password, "invalid_credentials")
    assert_unauthorized(unknown_email, "invalid_credentials")
    assert wrong_password.content == unknown_email.content
    assert "access_token" not in wrong_password.text


async def test_login_for_an_unknown_email_still_runs_one_argon2_verification(
    client: httpx.AsyncClient, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unknown email costs what a wrong password costs: one verification, against a dummy
    hash with the same argon2 parameters as the hashes signup stores (checked by code path,
    not by the clock)."""
    created = await client.post(SIGNUP_URL, json={"email": "t@x.io", "password": PASSWORD})
    assert created.status_code == 201, created.text
    verified_against: list[str] = []
    real_verify = security._password_hash.verify

    def spy(password: str, password_hash: str) -> bool:
        verified_against.append(password_hash)
        return real_verify(password, password_hash)

    monkeypatch.setattr(security._password_hash, "verify", spy)

    unknown = await client.post(LOGIN_URL, json={"email": "nobody@x.io", "password": PASSWORD})
    wrong = await client.post(LOGIN_URL, json={"email": "t@x.io", "password": "wrong-pass"})

    assert_unauthorized(unknown, "invalid_credentials")
    assert_unauthorized(wrong, "invalid_credentials")
    row = await fetch_user_row(engine, "t@x.io")
    assert row is not None
    stored_hash = str(row["password_hash"])
    assert verified_against == [security._DUMMY_HASH, stored_hash]
    # Same algorithm, version and cost: "$argon2id$v=19$m=...,t=...,p=...$salt$hash".
    assert security._DUMMY_HASH.split("$")[1:4] == stored_hash.split("$")[1:4]


async def test_login_with_the_dummy_hash_password_for_an_unknown_email_is_401(
    client: httpx.AsyncClient,
) -> None:
    # The dummy hash is real; its password must not log anyone in.
    response = await client.post(
        LOGIN_URL,
        json={"email": "nobody@example.com", "password": "timing-equaliser-not-a-real-password"},
    )

    assert_unauthorized(response, "invalid_credentials")


@pytest.mark.parametrize(
    ("kwargs", "loc"),
    [
        ({"json": {"email": "a@x.io"}}, ["body", "password"]),
        ({"json": {"password": PASSWORD}}, ["body", "email"]),
        ({"json": {"email": "not-an-email", "password": PASSWORD}}, ["body", "email"]),
        ({"json": {"email": "a@x.io", "password": "p" * 129}}, ["body", "password"]),
    ],
    ids=[
        "json-no-password",
        "json-no-email",
        "json-bad-email",
        "json-long-password",
    ],
)
async def test_login_with_missing_or_invalid_fields_is_422(
    client: httpx.AsyncClient, kwargs: dict[str, object], loc: list[str]
) -> None:
    response = await client.post(LOGIN_URL, **kwargs)  # type: ignore[arg-type]

    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "validation_error"
    assert [error["loc"] for error in body["errors"]] == [loc]
    assert PASSWORD not in response.text


async def test_login_takes_json_only_and_points_a_form_at_the_token_route(
    client: httpx.AsyncClient, stored_user: StoredUser
) -> None:
    response = await client.post(
        LOGIN_URL, data={"username": stored_user.email, "password": stored_user.password}
    )

    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "validation_error"
    assert body["detail"] == "The request body must be a JSON object."
    assert "access_token" not in response.text


async def test_login_with_a_body_that_is_not_json_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        LOGIN_URL, content=b"{not json", headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"


# --- me ----------------------------------------------------------------------------------


async def test_me_returns_the_authenticated_user(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    created = await client.post(
        SIGNUP_URL, json={"email": "Me@Example.com", "password": PASSWORD, "name": "Me"}
    )
    login = await client.post(LOGIN_URL, json={"email": "me@example.com", "password": PASSWORD})
    assert login.status_code == 200, login.text

    response = await client.get(ME_URL, headers=bearer(login.json()["access_token"]))

    assert response.status_code == 200, response.text
    assert response.json() == {name: created.json()[name] for name in USER_FIELDS}
    row = await fetch_user_row(engine, "me@example.com")
    assert row is not None
    assert str(row["id"]) == response.json()["id"]
