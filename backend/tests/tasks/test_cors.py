"""CORS for the SPA: only configured origins, and the list's Link header is readable."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager

from app.main import create_app
from tests.fixtures.accounts import Account
from tests.fixtures.app import make_settings
from tests.fixtures.tasks import create_task

# Every test here writes tasks for the package's shared accounts (see conftest.py).
pytestmark = pytest.mark.usefixtures("clean_tasks")

SPA_ORIGIN = "http://spa.example:5173"
OTHER_ORIGIN = "http://evil.example"


@pytest.fixture
async def cors_client(database_url: str, clean_tasks: None) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(database_url, cors_origins=[SPA_ORIGIN]))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


def _preflight_headers(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "PATCH",
        "Access-Control-Request-Headers": "authorization, content-type",
    }


def _exposed(response: httpx.Response) -> set[str]:
    value = response.headers.get("access-control-expose-headers", "")
    return {name.strip().lower() for name in value.split(",") if name.strip()}


async def test_preflight_from_an_allowed_origin_is_allowed(
    cors_client: httpx.AsyncClient, account: Account
) -> None:
    response = await cors_client.options(
        f"{account.tasks_url}/00000000-0000-0000-0000-000000000000/complete",
        headers=_preflight_headers(SPA_ORIGIN),
    )

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == SPA_ORIGIN
    assert "PATCH" in response.headers["access-control-allow-methods"]
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed
    assert "content-type" in allowed


async def test_list_from_an_allowed_origin_exposes_the_link_header(
    cors_client: httpx.AsyncClient, account: Account
) -> None:
    for title in ("one", "two"):
        await create_task(cors_client, account, title)

    response = await cors_client.get(
        account.tasks_url, params={"limit": 1}, headers={**account.headers, "Origin": SPA_ORIGIN}
    )

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == SPA_ORIGIN
    assert "link" in response.headers
    assert {"link", "location"} <= _exposed(response)


async def test_preflight_from_another_origin_gets_no_allow_origin(
    cors_client: httpx.AsyncClient, account: Account
) -> None:
    response = await cors_client.options(
        account.tasks_url, headers=_preflight_headers(OTHER_ORIGIN)
    )

    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


async def test_request_from_another_origin_gets_no_allow_origin(
    cors_client: httpx.AsyncClient, account: Account
) -> None:
    response = await cors_client.get(
        account.tasks_url, headers={**account.headers, "Origin": OTHER_ORIGIN}
    )

    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


async def test_no_origin_is_allowed_by_default(client: httpx.AsyncClient, account: Account) -> None:
    preflight = await client.options(account.tasks_url, headers=_preflight_headers(SPA_ORIGIN))
    response = await client.get(
        account.tasks_url, headers={**account.headers, "Origin": SPA_ORIGIN}
    )

    assert "access-control-allow-origin" not in preflight.headers
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
