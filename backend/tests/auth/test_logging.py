"""What the accounts routes leave in the log: who made the request, never a secret."""

from __future__ import annotations

import httpx
import pytest

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
)
from tests.fixtures.logs import LogCapture

# The users and tasks a test leaves through `client` are deleted after it (see fixtures/app.py).
pytestmark = pytest.mark.usefixtures("clean_database")

SECRET_PASSWORD = "Pa55-unmistakable-in-a-log"
WRONG_PASSWORD = "Wr0ng-unmistakable-in-a-log"


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
    [rejected] = [r for r in app_logs.records() if r["event"] == "token_rejected"]
    assert rejected["reason"] == "InvalidSignatureError"
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
