"""The current-user and path-owner dependencies: which bearer tokens get in, and where.

Every rejected token is crafted for its case with PyJWT and the test secret, for a user that
exists, so the one thing wrong with it is the thing under test.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import jwt
import orjson
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.main import create_app
from tests.fixtures.accounts import (
    LOGIN_URL,
    ME_URL,
    Account,
    StoredUser,
    assert_unauthorized,
    bearer,
    claims_for,
    count_rows,
    craft_token,
    store_user,
)
from tests.fixtures.app import TEST_JWT_SECRET, make_settings
from tests.fixtures.sessions import refused_within

# The users and tasks a test leaves through `client` are deleted after it (see fixtures/app.py).
pytestmark = pytest.mark.usefixtures("clean_database")

OTHER_SECRET = "another-secret-" + "y" * 40


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(user_id: uuid.UUID) -> str:
    """The classic ``alg: none`` forgery: no signature at all."""
    header = _b64(orjson.dumps({"alg": "none", "typ": "JWT"}))
    return f"{header}.{_b64(orjson.dumps(claims_for(user_id)))}."


def payload_swapped_token(user_id: uuid.UUID) -> str:
    """A genuine signature over someone else's claims, pasted onto ``user_id``'s claims."""
    header, _, signature = craft_token(claims_for(uuid.uuid4())).split(".")
    return f"{header}.{_b64(orjson.dumps(claims_for(user_id)))}.{signature}"


async def test_a_crafted_token_with_the_right_secret_and_claims_is_accepted(
    client: httpx.AsyncClient, stored_user: StoredUser
) -> None:
    """The control for every rejection below: the crafted tokens differ from this one only
    in the flaw under test."""
    response = await client.get(ME_URL, headers=bearer(craft_token(claims_for(stored_user.id))))

    assert response.status_code == 200, response.text
    assert response.json()["id"] == str(stored_user.id)


async def test_the_bearer_scheme_name_is_case_insensitive(
    client: httpx.AsyncClient, stored_user: StoredUser
) -> None:
    token = craft_token(claims_for(stored_user.id))

    response = await client.get(ME_URL, headers={"Authorization": f"bearer {token}"})

    assert response.status_code == 200, response.text


async def test_a_request_without_authorization_is_401_not_authenticated(
    client: httpx.AsyncClient,
) -> None:
    assert_unauthorized(await client.get(ME_URL), "not_authenticated")


@pytest.mark.parametrize(
    "authorization", ["Token x", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", ""]
)
async def test_an_authorization_header_without_a_bearer_token_is_401_not_authenticated(
    client: httpx.AsyncClient, authorization: str
) -> None:
    response = await client.get(ME_URL, headers={"Authorization": authorization})

    assert_unauthorized(response, "not_authenticated")


@pytest.mark.parametrize("token", ["abc", "a.b.c", "...", "Bearer x"])
async def test_a_bearer_value_that_is_not_a_jwt_is_401_invalid_token(
    client: httpx.AsyncClient, token: str
) -> None:
    response = await client.get(ME_URL, headers={"Authorization": f"Bearer {token}"})

    assert_unauthorized(response, "invalid_token")


REJECTED_TOKENS: dict[str, Callable[[uuid.UUID], str]] = {
    "bad-signature": lambda uid: craft_token(claims_for(uid), key=OTHER_SECRET),
    "payload-changed-after-signing": payload_swapped_token,
    "alg-none": unsigned_token,
    "hs512-when-hs256-is-configured": lambda uid: craft_token(claims_for(uid), algorithm="HS512"),
    "hs384-when-hs256-is-configured": lambda uid: craft_token(claims_for(uid), algorithm="HS384"),
    "not-yet-valid": lambda uid: craft_token(claims_for(uid, nbf=int(time.time()) + 600)),
    "missing-sub": lambda uid: craft_token(claims_for(uid, sub=None)),
    "missing-sid": lambda uid: craft_token(claims_for(uid, sid=None)),
    "sid-not-a-uuid": lambda uid: craft_token(claims_for(uid, sid="not-a-uuid")),
    # An expired token of another secret is a forgery, not an expired token.
    "expired-and-bad-signature": lambda uid: craft_token(
        claims_for(uid, exp=int(time.time()) - 60), key=OTHER_SECRET
    ),
    "missing-exp": lambda uid: craft_token(claims_for(uid, exp=None)),
    "missing-iat": lambda uid: craft_token(claims_for(uid, iat=None)),
    "sub-not-a-uuid": lambda uid: craft_token(claims_for(uid, sub="not-a-uuid")),
    "sub-not-a-string": lambda uid: craft_token(claims_for(uid, sub=12345)),
    "exp-not-a-number": lambda uid: craft_token(claims_for(uid, exp="tomorrow")),
}


# PyJWT warns that the test secret is short for HS512; the token is meant to be rejected anyway.
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize("make_token", REJECTED_TOKENS.values(), ids=REJECTED_TOKENS.keys())
async def test_a_flawed_token_is_401_invalid_token(
    client: httpx.AsyncClient, stored_user: StoredUser, make_token: Callable[[uuid.UUID], str]
) -> None:
    response = await client.get(ME_URL, headers=bearer(make_token(stored_user.id)))

    assert_unauthorized(response, "invalid_token")


async def test_an_expired_token_is_401_token_expired_so_the_client_refreshes(
    client: httpx.AsyncClient, stored_user: StoredUser
) -> None:
    expired = craft_token(
        claims_for(stored_user.id, iat=int(time.time()) - 7200, exp=int(time.time()) - 60)
    )

    response = await client.get(ME_URL, headers=bearer(expired))

    assert_unauthorized(response, "token_expired")


async def test_a_token_that_expires_while_cached_is_401_token_expired(
    client: httpx.AsyncClient, stored_user: StoredUser
) -> None:
    token = craft_token(claims_for(stored_user.id, exp=int(time.time()) + 1))
    assert (await client.get(ME_URL, headers=bearer(token))).status_code == 200  # now cached

    await asyncio.sleep(max(0.0, int(time.time()) + 1 - time.time()) + 0.05)
    response = await client.get(ME_URL, headers=bearer(token))

    assert_unauthorized(response, "token_expired")


async def test_a_flawed_token_on_a_task_route_is_401_and_writes_nothing(
    client: httpx.AsyncClient, stored_user: StoredUser, engine: AsyncEngine
) -> None:
    expired = craft_token(claims_for(stored_user.id, exp=int(time.time()) - 60))

    response = await client.post(
        f"/api/{stored_user.id}/tasks", json={"title": "sneaky"}, headers=bearer(expired)
    )

    assert_unauthorized(response, "token_expired")
    assert await count_rows(engine, "tasks") == 0


async def test_the_token_of_a_deleted_user_is_401_invalid_token(
    client: httpx.AsyncClient, logged_in: Account, engine: AsyncEngine
) -> None:
    assert (await client.get(ME_URL, headers=logged_in.headers)).status_code == 200
    async with engine.begin() as connection:
        await connection.execute(text("DELETE FROM users WHERE id = :id"), {"id": logged_in.id})

    response = await client.get(ME_URL, headers=logged_in.headers)

    assert_unauthorized(response, "invalid_token")


# Every task route, with a task the user owned before the account went (its tasks went with
# it: ON DELETE CASCADE), so each statement finds nothing and must tell 401 from 404.
TASK_ROUTES_AFTER_DELETION = [
    pytest.param("GET", "", None, id="list"),
    pytest.param("POST", "", {"title": "after deletion"}, id="create"),
    pytest.param("GET", "/{task}", None, id="get"),
    pytest.param("PUT", "/{task}", {"title": "after deletion"}, id="put"),
    pytest.param("PATCH", "/{task}", {"title": "after deletion"}, id="patch"),
    pytest.param("PATCH", "/{task}", {}, id="patch-empty"),
    pytest.param("PATCH", "/{task}/complete", None, id="toggle"),
    pytest.param("DELETE", "/{task}", None, id="delete"),
]


@pytest.mark.parametrize(("method", "path", "body"), TASK_ROUTES_AFTER_DELETION)
async def test_the_token_of_a_deleted_user_is_401_on_every_task_route(
    client: httpx.AsyncClient,
    logged_in: Account,
    engine: AsyncEngine,
    method: str,
    path: str,
    body: dict[str, object] | None,
) -> None:
    created = await client.post(logged_in.tasks_url, json={"title": "t"}, headers=logged_in.headers)
    assert created.status_code == 201, created.text
    async with engine.begin() as connection:
        await connection.execute(text("DELETE FROM users WHERE id = :id"), {"id": logged_in.id})

    url = logged_in.tasks_url + path.format(task=created.json()["id"])
    response = await client.request(method, url, json=body, headers=logged_in.headers)

    assert_unauthorized(response, "invalid_token")
    assert await count_rows(engine, "tasks") == 0


async def test_a_deleted_users_token_is_refused_at_the_door_even_with_malformed_input(
    client: httpx.AsyncClient, logged_in: Account, engine: AsyncEngine
) -> None:
    """Deleting the account deletes its sessions, and the database's notification revokes
    them in every process: from then on the token is refused before its input is read."""
    async with engine.begin() as connection:
        await connection.execute(text("DELETE FROM users WHERE id = :id"), {"id": logged_in.id})
    await refused_within(client, logged_in.token)

    response = await client.post(logged_in.tasks_url, json={"title": ""}, headers=logged_in.headers)

    assert_unauthorized(response, "invalid_token")
    assert await count_rows(engine, "tasks") == 0


async def test_a_deleted_users_token_is_401_not_403_in_another_namespace(
    client: httpx.AsyncClient, logged_in: Account, engine: AsyncEngine
) -> None:
    async with engine.begin() as connection:
        await connection.execute(text("DELETE FROM users WHERE id = :id"), {"id": logged_in.id})

    response = await client.get(f"/api/{uuid.uuid4()}/tasks", headers=logged_in.headers)

    assert_unauthorized(response, "invalid_token")


async def test_a_token_for_a_subject_that_never_existed_is_401_invalid_token(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get(ME_URL, headers=bearer(craft_token(claims_for(uuid.uuid4()))))

    assert_unauthorized(response, "invalid_token")


async def test_a_token_in_the_query_string_is_not_accepted(
    client: httpx.AsyncClient, stored_user: StoredUser
) -> None:
    token = craft_token(claims_for(stored_user.id))

    for url in (ME_URL, f"/api/{stored_user.id}/tasks"):
        response = await client.get(url, params={"access_token": token})
        assert_unauthorized(response, "not_authenticated")


# --- the {user_id} namespace -------------------------------------------------------------

FORBIDDEN = {"detail": "Not allowed to access this resource", "code": "forbidden"}


async def test_my_own_namespace_is_open_to_my_token(
    client: httpx.AsyncClient, logged_in: Account
) -> None:
    response = await client.get(logged_in.tasks_url, headers=logged_in.headers)

    assert response.status_code == 200, response.text
    assert response.json() == []


async def test_another_users_namespace_is_403_forbidden(
    client: httpx.AsyncClient, logged_in: Account, engine: AsyncEngine
) -> None:
    other = await store_user(engine)

    listed = await client.get(f"/api/{other.id}/tasks", headers=logged_in.headers)
    created = await client.post(
        f"/api/{other.id}/tasks", json={"title": "planted"}, headers=logged_in.headers
    )

    assert listed.status_code == 403, listed.text
    assert listed.json() == FORBIDDEN
    assert created.status_code == 403, created.text
    assert created.json() == FORBIDDEN
    assert await count_rows(engine, "tasks") == 0


async def test_a_random_namespace_is_403_like_an_existing_users(
    client: httpx.AsyncClient, logged_in: Account, engine: AsyncEngine
) -> None:
    """Existing and unknown user ids answer alike, so the namespace cannot be probed."""
    other = await store_user(engine)

    existing = await client.get(f"/api/{other.id}/tasks", headers=logged_in.headers)
    unknown = await client.get(f"/api/{uuid.uuid4()}/tasks", headers=logged_in.headers)

    assert unknown.status_code == 403, unknown.text
    assert unknown.content == existing.content


async def test_another_users_namespace_without_a_token_is_401_not_403(
    client: httpx.AsyncClient, stored_user: StoredUser
) -> None:
    response = await client.get(f"/api/{stored_user.id}/tasks")

    assert_unauthorized(response, "not_authenticated")


# --- issuer and audience -----------------------------------------------------------------

ISSUER = "https://auth.example.test"
AUDIENCE = "task-spa"


@pytest.fixture(scope="module")
async def strict_app(database_url: str) -> AsyncIterator[FastAPI]:
    """An app that requires JWT_ISSUER and JWT_AUDIENCE (same database as `app`)."""
    application = create_app(make_settings(database_url, jwt_issuer=ISSUER, jwt_audience=AUDIENCE))
    async with LifespanManager(application) as manager:
        yield manager.app  # type: ignore[misc]


@pytest.fixture
async def strict_client(
    strict_app: FastAPI, clean_database: None
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=strict_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def test_with_issuer_and_audience_configured_a_token_carrying_both_is_accepted(
    strict_client: httpx.AsyncClient, stored_user: StoredUser
) -> None:
    token = craft_token(claims_for(stored_user.id, iss=ISSUER, aud=AUDIENCE))

    response = await strict_client.get(ME_URL, headers=bearer(token))

    assert response.status_code == 200, response.text
    assert response.json()["id"] == str(stored_user.id)


async def test_with_issuer_and_audience_configured_login_issues_both_claims(
    strict_client: httpx.AsyncClient, stored_user: StoredUser
) -> None:
    login = await strict_client.post(
        LOGIN_URL, json={"email": stored_user.email, "password": stored_user.password}
    )
    assert login.status_code == 200, login.text
    token = login.json()["access_token"]

    claims = jwt.decode(token, TEST_JWT_SECRET, algorithms=["HS256"], audience=AUDIENCE)
    assert claims["iss"] == ISSUER
    assert claims["aud"] == AUDIENCE
    assert (await strict_client.get(ME_URL, headers=bearer(token))).status_code == 200


@pytest.mark.parametrize(
    "changes",
    [
        {"iss": "https://evil.example.test", "aud": AUDIENCE},
        {"aud": AUDIENCE},
        {"iss": ISSUER, "aud": "another-app"},
        {"iss": ISSUER},
        {"iss": ISSUER, "aud": ["another-app", "a-third-app"]},
    ],
    ids=["wrong-iss", "missing-iss", "wrong-aud", "missing-aud", "aud-list-without-ours"],
)
async def test_with_issuer_and_audience_configured_a_token_without_the_right_ones_is_401(
    strict_client: httpx.AsyncClient, stored_user: StoredUser, changes: dict[str, object]
) -> None:
    token = craft_token(claims_for(stored_user.id, **changes))

    response = await strict_client.get(ME_URL, headers=bearer(token))

    assert_unauthorized(response, "invalid_token")
