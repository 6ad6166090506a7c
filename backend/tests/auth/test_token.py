"""POST /api/auth/token: the OAuth2 password grant as a form, for the docs' Authorize button
and OAuth2 tooling; it answers as login does."""

from __future__ import annotations

import httpx
import pytest

from tests.fixtures.accounts import (
    ME_URL,
    PASSWORD,
    TOKEN_URL,
    StoredUser,
    assert_token_response,
    assert_unauthorized,
    bearer,
)

# The users a test leaves through `client` are deleted after it (see fixtures/app.py).
pytestmark = pytest.mark.usefixtures("clean_database")


async def test_the_password_grant_returns_a_bearer_token_that_works(
    client: httpx.AsyncClient, stored_user: StoredUser
) -> None:
    # What Swagger UI's Authorize button sends.
    response = await client.post(
        TOKEN_URL,
        data={
            "grant_type": "password",
            "username": stored_user.email,
            "password": stored_user.password,
            "scope": "",
        },
    )

    assert response.status_code == 200, response.text
    assert_token_response(response.json(), stored_user)
    me = await client.get(ME_URL, headers=bearer(response.json()["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json()["id"] == str(stored_user.id)


async def test_the_username_is_the_email_matched_case_insensitively(
    client: httpx.AsyncClient, stored_user: StoredUser
) -> None:
    response = await client.post(
        TOKEN_URL, data={"username": stored_user.email.upper(), "password": stored_user.password}
    )

    assert response.status_code == 200, response.text
    assert response.json()["user"]["id"] == str(stored_user.id)


async def test_a_wrong_password_is_the_logins_401(
    client: httpx.AsyncClient, stored_user: StoredUser
) -> None:
    response = await client.post(
        TOKEN_URL, data={"username": stored_user.email, "password": "not the password"}
    )

    assert_unauthorized(response, "invalid_credentials")


@pytest.mark.parametrize(
    ("data", "loc", "detail"),
    [
        ({"username": "a@x.io"}, ["body", "password"], "Password is required."),
        ({"password": PASSWORD}, ["body", "username"], "Username is required."),
        (
            {"username": "not-an-email", "password": PASSWORD},
            ["body", "username"],
            "Username: An email address must have an @-sign.",
        ),
        (
            {"username": "a@x.io", "password": PASSWORD, "grant_type": "client_credentials"},
            ["body", "grant_type"],
            "Grant type must be 'password'.",
        ),
    ],
    ids=["no-password", "no-username", "bad-username", "other-grant"],
)
async def test_missing_or_invalid_fields_are_422_named_as_sent(
    client: httpx.AsyncClient, data: dict[str, str], loc: list[str], detail: str
) -> None:
    response = await client.post(TOKEN_URL, data=data)

    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "validation_error"
    assert body["detail"] == detail
    assert [error["loc"] for error in body["errors"]] == [loc]
    assert PASSWORD not in response.text


async def test_a_json_body_is_refused(client: httpx.AsyncClient, stored_user: StoredUser) -> None:
    response = await client.post(
        TOKEN_URL, json={"username": stored_user.email, "password": stored_user.password}
    )

    assert response.status_code == 422, response.text
    assert "access_token" not in response.text
