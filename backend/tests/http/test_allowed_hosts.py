"""ALLOWED_HOSTS: a request for another host name is refused before any route runs, so the URLs
the service builds from Host (Location, Link) only ever name it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy.ext.asyncio import AsyncEngine

from app.main import create_app
from tests.fixtures.accounts import Account, count_rows
from tests.fixtures.app import make_settings

# The users and tasks a test leaves are deleted after it (see fixtures/app.py).
pytestmark = pytest.mark.usefixtures("clean_database")


@pytest.fixture
async def guarded(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(database_url, allowed_hosts=["API.example.com", "*.internal"])
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.example.com") as h:
            yield h


@pytest.mark.parametrize("host", ["api.example.com", "api.example.com:8443", "lb.internal:8000"])
async def test_a_listed_host_is_served_and_named_in_location(
    guarded: httpx.AsyncClient, new_account: Account, host: str
) -> None:
    response = await guarded.post(
        new_account.tasks_url, json={"title": "t"}, headers={**new_account.headers, "Host": host}
    )

    assert response.status_code == 201, response.text
    assert response.headers["location"].startswith(f"http://{host}/api/")


@pytest.mark.parametrize(
    "host", ["evil.example", "api.example.com.evil.example", "internal", "x.internal.evil", ""]
)
async def test_any_other_host_is_refused_before_the_route_runs(
    guarded: httpx.AsyncClient, new_account: Account, engine: AsyncEngine, host: str
) -> None:
    response = await guarded.post(
        new_account.tasks_url, json={"title": "t"}, headers={**new_account.headers, "Host": host}
    )

    assert response.status_code == 400
    assert response.json() == {
        "detail": "This host name is not served here",
        "code": "invalid_host",
    }
    assert response.headers["x-request-id"]
    assert await count_rows(engine, "tasks") == 0


async def test_without_the_setting_any_host_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"Host": "whatever.example"})

    assert response.status_code == 200
