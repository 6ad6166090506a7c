"""Input limits and response headers every route shares."""

from __future__ import annotations

import httpx
from asgi_lifespan import LifespanManager

from app.main import create_app
from tests.fixtures.accounts import Account
from tests.fixtures.app import make_settings


async def test_body_over_the_cap_is_refused_with_413(
    client: httpx.AsyncClient, new_account: Account
) -> None:
    response = await client.post(
        new_account.tasks_url,
        content=b'{"title": "' + b"x" * (64 * 1024) + b'"}',
        headers={**new_account.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json() == {"detail": "Request body too large", "code": "request_too_large"}


async def test_chunked_body_over_the_cap_is_refused_with_413(
    client: httpx.AsyncClient, new_account: Account
) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        yield b'{"title": "'
        for _ in range(70):
            yield b"y" * 1024
        yield b'"}'

    response = await client.post(
        new_account.tasks_url,
        content=chunks(),
        headers={**new_account.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["code"] == "request_too_large"


async def test_nul_character_in_a_string_is_a_422_not_a_500(
    client: httpx.AsyncClient, new_account: Account
) -> None:
    for body in ({"title": "a\u0000b"}, {"title": "ok", "description": "\u0000"}):
        response = await client.post(new_account.tasks_url, json=body, headers=new_account.headers)
        assert response.status_code == 422, response.text
        assert response.json()["code"] == "validation_error"
    signup = await client.post(
        "/api/auth/signup", json={"email": "nul@example.com", "password": "pass\u0000word1"}
    )
    assert signup.status_code == 422
    login = await client.post(
        "/api/auth/login", data={"username": "a@example.com", "password": "x\u0000y"}
    )
    assert login.status_code == 422
    listed = await client.get(new_account.tasks_url, headers=new_account.headers)
    assert listed.json() == []


async def test_out_of_range_query_values_are_422(
    client: httpx.AsyncClient, new_account: Account
) -> None:
    for query in ("limit=0", "limit=501", "limit=99999999999999999999999", "completed=maybe"):
        response = await client.get(f"{new_account.tasks_url}?{query}", headers=new_account.headers)
        assert response.status_code == 422, query


async def test_responses_carry_security_headers_and_no_store(
    client: httpx.AsyncClient, new_account: Account
) -> None:
    for response in (
        await client.get(new_account.tasks_url, headers=new_account.headers),
        await client.get("/api/auth/me", headers=new_account.headers),
        await client.get("/api/auth/me"),
    ):
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Content-Security-Policy"] == (
            "default-src 'none'; frame-ancestors 'none'"
        )


async def test_undocumented_method_gets_405_with_allow(
    client: httpx.AsyncClient, new_account: Account
) -> None:
    response = await client.request("TRACE", new_account.tasks_url, headers=new_account.headers)
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"
    assert set(response.headers["Allow"].replace(" ", "").split(",")) == {"GET", "POST"}


async def test_token_in_query_string_is_not_accepted(
    client: httpx.AsyncClient, new_account: Account
) -> None:
    response = await client.get(f"/api/auth/me?access_token={new_account.token}")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


async def test_a_too_large_body_from_the_spa_is_a_413_the_spa_can_read(
    database_url: str, clean_database: None
) -> None:
    """CORS sits outside the body cap: the browser must see the 413, not a CORS failure."""
    app = create_app(make_settings(database_url, cors_origins=["https://spa.example"]))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            response = await http.post(
                "/api/auth/signup",
                content=b"x" * (70 * 1024),
                headers={"Origin": "https://spa.example", "Content-Type": "application/json"},
            )
    assert response.status_code == 413
    assert response.headers["Access-Control-Allow-Origin"] == "https://spa.example"
