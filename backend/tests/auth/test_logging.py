"""What the accounts routes leave in the log: who made the request, never a secret."""

from __future__ import annotations

import uuid

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy.ext.asyncio import AsyncEngine

from app.main import create_app
from tests.fixtures.accounts import (
    LOGIN_URL,
    ME_URL,
    SIGNUP_URL,
    TOKEN_URL,
    Account,
    StoredUser,
    bearer,
    claims_for,
    craft_token,
    store_user,
)
from tests.fixtures.app import client_at, make_settings
from tests.fixtures.logs import LogCapture, LogOutput

# The users and tasks a test leaves through `client` are deleted after it (see fixtures/app.py).
pytestmark = pytest.mark.usefixtures("clean_database")

SECRET_PASSWORD = "Pa55-unmistakable-in-a-log"
WRONG_PASSWORD = "Wr0ng-unmistakable-in-a-log"
# What httpx.ASGITransport reports as the peer of the session's client.
CLIENT_ADDRESS = "127.0.0.1"


async def test_the_access_line_of_an_authenticated_request_carries_the_user_id(
    client: httpx.AsyncClient, logged_in: Account, app_logs: LogCapture
) -> None:
    response = await client.get(ME_URL, headers=logged_in.headers)

    assert response.status_code == 200, response.text
    [line] = app_logs.access_lines(ME_URL)
    assert line["user_id"] == logged_in.id
    assert line["status"] == 200


async def test_the_user_id_does_not_leak_into_the_next_requests_log_context(
    client: httpx.AsyncClient, logged_in: Account, app_logs: LogCapture
) -> None:
    await client.get(ME_URL, headers=logged_in.headers)

    anonymous = await client.get(ME_URL)

    assert anonymous.status_code == 401
    authenticated_line, anonymous_line = app_logs.access_lines(ME_URL)
    assert authenticated_line["user_id"] == logged_in.id
    assert "user_id" not in anonymous_line
    assert anonymous_line["status"] == 401


async def test_a_rejected_token_is_logged_with_a_reason_but_without_the_token(
    client: httpx.AsyncClient, stored_user: StoredUser, app_logs: LogCapture
) -> None:
    token = craft_token(claims_for(stored_user.id), key="another-secret-" + "y" * 40)

    response = await client.get(ME_URL, headers=bearer(token))

    assert response.status_code == 401
    [rejected] = app_logs.records(event="token_rejected")
    assert rejected["reason"] == "InvalidSignatureError"
    assert rejected["client_address"] == CLIENT_ADDRESS
    # The signature is not valid, so the subject it names is nobody's word.
    assert "user_id" not in rejected
    [access] = app_logs.access_lines(ME_URL)
    assert "user_id" not in access
    assert token not in app_logs.text
    assert token.split(".")[2] not in app_logs.text


async def test_neither_passwords_nor_tokens_appear_in_the_log(
    client: httpx.AsyncClient, app_logs: LogCapture
) -> None:
    email = "logged@example.com"
    signup = await client.post(SIGNUP_URL, json={"email": email, "password": SECRET_PASSWORD})
    short = await client.post(SIGNUP_URL, json={"email": "s@x.io", "password": "Sh0rt!"})
    json_login = await client.post(LOGIN_URL, json={"email": email, "password": SECRET_PASSWORD})
    form_login = await client.post(TOKEN_URL, data={"username": email, "password": SECRET_PASSWORD})
    wrong = await client.post(LOGIN_URL, json={"email": email, "password": WRONG_PASSWORD})
    tokens = [json_login.json()["access_token"], form_login.json()["access_token"]]
    me = await client.get(ME_URL, headers=bearer(tokens[0]))

    statuses = [r.status_code for r in (signup, short, json_login, form_login, wrong, me)]
    assert statuses == [201, 422, 200, 200, 401, 200]
    assert [line["status"] for line in app_logs.access_lines(LOGIN_URL)] == [200, 401]
    assert [line["status"] for line in app_logs.access_lines(TOKEN_URL)] == [200]
    for secret in (SECRET_PASSWORD, WRONG_PASSWORD, "Sh0rt!", *tokens):
        assert secret not in app_logs.text


async def test_a_failed_login_is_logged_with_the_address_and_the_user_id_but_no_secret(
    client: httpx.AsyncClient, stored_user: StoredUser, app_logs: LogCapture
) -> None:
    response = await client.post(
        LOGIN_URL, json={"email": stored_user.email, "password": WRONG_PASSWORD}
    )

    assert response.status_code == 401
    [failed] = app_logs.records(event="login_failed")
    assert failed["client_address"] == CLIENT_ADDRESS
    assert failed["user_id"] == str(stored_user.id)
    assert failed["reason"] == "wrong password"
    for secret in (WRONG_PASSWORD, stored_user.email):
        assert secret not in app_logs.text


async def test_a_failed_login_for_an_unknown_email_names_no_account(
    client: httpx.AsyncClient, app_logs: LogCapture
) -> None:
    email = "nobody-unmistakable@example.com"

    response = await client.post(LOGIN_URL, json={"email": email, "password": WRONG_PASSWORD})

    assert response.status_code == 401
    [failed] = app_logs.records(event="login_failed")
    assert failed["client_address"] == CLIENT_ADDRESS
    assert failed["reason"] == "unknown email"
    assert "user_id" not in failed
    assert email not in app_logs.text


@pytest.mark.parametrize("url", [ME_URL, "/api/{user_id}/tasks"])
async def test_the_token_of_a_deleted_user_is_logged_with_its_user_id_and_address(
    client: httpx.AsyncClient, app_logs: LogCapture, url: str
) -> None:
    """A valid signature makes the subject worth logging, even when the account is gone (the
    task routes find that out deep in a statement, with no request at hand)."""
    gone = uuid.uuid4()
    token = craft_token(claims_for(gone))

    response = await client.get(url.format(user_id=gone), headers=bearer(token))

    assert response.status_code == 401
    [rejected] = app_logs.records(event="token_rejected")
    assert rejected == rejected | {
        "reason": "unknown subject",
        "user_id": str(gone),
        "client_address": CLIENT_ADDRESS,
    }
    assert token.split(".")[2] not in app_logs.text


async def test_throttled_signups_and_logins_are_logged_with_the_address_and_the_wait(
    database_url: str, engine: AsyncEngine, log_output: LogOutput
) -> None:
    user = await store_user(engine)
    settings = make_settings(
        database_url,
        rate_limit_auth_per_address="3/minute",
        rate_limit_login_failures_per_account_and_address="1/minute",
    )
    async with (
        LifespanManager(create_app(settings)) as manager,
        client_at(manager.app, "10.1.2.3") as http,
    ):
        wrong = {"email": user.email, "password": WRONG_PASSWORD}
        right = {"email": user.email, "password": user.password}
        statuses = [
            (await http.post(LOGIN_URL, json=wrong)).status_code,  # counted, fails
            (await http.post(LOGIN_URL, json=right)).status_code,  # per account+address
            (await http.post(SIGNUP_URL, json=right)).status_code,  # 409, third
            (await http.post(SIGNUP_URL, json=right)).status_code,  # over the address's limit
            (
                await http.post(TOKEN_URL, data={"username": user.email, "password": "x"})
            ).status_code,
        ]

    assert statuses == [401, 429, 409, 429, 429]
    account_refusal, address_refusal = log_output.records(event="login_throttled")
    assert account_refusal == account_refusal | {
        "client_address": "10.1.2.3",
        "user_id": str(user.id),
        "limit": "account_and_address",
    }
    assert 1 <= account_refusal["retry_after"] <= 60
    # Refused before the body is read: whose account it was is not known yet.
    assert address_refusal == address_refusal | {"client_address": "10.1.2.3", "limit": "address"}
    assert "user_id" not in address_refusal
    [signup_refusal] = log_output.records(event="signup_throttled")
    assert signup_refusal["client_address"] == "10.1.2.3"
    assert 1 <= signup_refusal["retry_after"] <= 60
    for secret in (WRONG_PASSWORD, user.password, user.email):
        assert secret not in log_output.text
