"""CORS for the SPA: only configured origins, on every answer the app can give (errors, the
last resort's 500 and the body cap's 413 included), with configurable header lists."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager

from app.main import create_app
from tests.fixtures.accounts import Account
from tests.fixtures.app import make_settings
from tests.fixtures.logs import LogCapture

# The users a test leaves are deleted after it (see fixtures/app.py).
pytestmark = pytest.mark.usefixtures("clean_database")

SPA_ORIGIN = "http://spa.example:5173"
OTHER_ORIGIN = "http://evil.example"
DEFAULT_ALLOWED = {
    "authorization",
    "content-type",
    "x-request-id",
    "traceparent",
    "tracestate",
    "if-match",
    "if-none-match",
    "idempotency-key",
    "x-requested-with",
}
DEFAULT_EXPOSED = {"etag", "link", "location", "retry-after", "x-request-id", "www-authenticate"}


async def _crash() -> None:
    raise RuntimeError("a bug")


async def _client_for(database_url: str, **overrides: object) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(database_url, cors_origins=[SPA_ORIGIN], **overrides))
    app.add_api_route("/test/crash", _crash)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@pytest.fixture
async def cors_client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async for http in _client_for(database_url, max_request_body_bytes=1024):
        yield http


def _preflight_headers(origin: str, headers: str = "authorization, content-type") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "PATCH",
        "Access-Control-Request-Headers": headers,
    }


def _listed(response: httpx.Response, header: str) -> set[str]:
    value = response.headers.get(header, "")
    return {name.strip().lower() for name in value.split(",") if name.strip()}


def _assert_readable_by_the_spa(response: httpx.Response) -> None:
    assert response.headers["access-control-allow-origin"] == SPA_ORIGIN
    assert _listed(response, "access-control-expose-headers") >= DEFAULT_EXPOSED


async def test_preflight_from_an_allowed_origin_allows_the_default_headers(
    cors_client: httpx.AsyncClient, new_account: Account
) -> None:
    response = await cors_client.options(
        f"{new_account.tasks_url}/00000000-0000-0000-0000-000000000000/complete",
        headers=_preflight_headers(SPA_ORIGIN, ", ".join(sorted(DEFAULT_ALLOWED))),
    )

    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == SPA_ORIGIN
    assert "PATCH" in response.headers["access-control-allow-methods"]
    assert _listed(response, "access-control-allow-headers") >= DEFAULT_ALLOWED
    assert response.headers["access-control-max-age"] == "600"


async def test_a_preflight_is_observed_like_any_request(
    cors_client: httpx.AsyncClient, new_account: Account, app_logs: LogCapture
) -> None:
    response = await cors_client.options(
        new_account.tasks_url, headers={**_preflight_headers(SPA_ORIGIN), "X-Request-ID": "pf-1"}
    )

    assert response.status_code == 200
    assert response.headers["x-request-id"] == "pf-1"
    assert response.headers["x-content-type-options"] == "nosniff"
    [line] = app_logs.access_lines(new_account.tasks_url)
    assert (line["method"], line["status"], line["request_id"]) == ("OPTIONS", 200, "pf-1")


async def test_a_list_exposes_the_link_header(
    cors_client: httpx.AsyncClient, new_account: Account
) -> None:
    for title in ("one", "two"):
        created = await cors_client.post(
            new_account.tasks_url, json={"title": title}, headers=new_account.headers
        )
        assert created.status_code == 201

    response = await cors_client.get(
        new_account.tasks_url,
        params={"limit": 1},
        headers={**new_account.headers, "Origin": SPA_ORIGIN},
    )

    assert response.status_code == 200
    assert "link" in response.headers
    _assert_readable_by_the_spa(response)


async def test_an_unexpected_500_is_readable_by_the_spa(cors_client: httpx.AsyncClient) -> None:
    response = await cors_client.get("/test/crash", headers={"Origin": SPA_ORIGIN})

    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error", "code": "internal_error"}
    assert response.headers["x-request-id"]
    _assert_readable_by_the_spa(response)


async def test_a_body_too_large_is_readable_by_the_spa(
    cors_client: httpx.AsyncClient, new_account: Account
) -> None:
    response = await cors_client.post(
        new_account.tasks_url,
        json={"title": "x", "description": "y" * 2000},
        headers={**new_account.headers, "Origin": SPA_ORIGIN},
    )

    assert response.status_code == 413
    assert response.json()["code"] == "request_too_large"
    _assert_readable_by_the_spa(response)


async def test_a_401_exposes_its_challenge(
    cors_client: httpx.AsyncClient, new_account: Account
) -> None:
    response = await cors_client.get(new_account.tasks_url, headers={"Origin": SPA_ORIGIN})

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    _assert_readable_by_the_spa(response)


async def test_the_header_lists_are_configurable(database_url: str, new_account: Account) -> None:
    async for http in _client_for(
        database_url, cors_allow_headers=["Authorization", "X-Trace"], cors_expose_headers=["ETag"]
    ):
        custom = await http.options(
            new_account.tasks_url, headers=_preflight_headers(SPA_ORIGIN, "x-trace")
        )
        dropped = await http.options(
            new_account.tasks_url, headers=_preflight_headers(SPA_ORIGIN, "traceparent")
        )
        read = await http.get(
            new_account.tasks_url, headers={**new_account.headers, "Origin": SPA_ORIGIN}
        )

    assert custom.status_code == 200
    assert "x-trace" in _listed(custom, "access-control-allow-headers")
    assert dropped.status_code == 400  # not on the configured list
    assert _listed(read, "access-control-expose-headers") == {"etag"}


async def test_preflight_from_another_origin_gets_no_allow_origin(
    cors_client: httpx.AsyncClient, new_account: Account
) -> None:
    response = await cors_client.options(
        new_account.tasks_url, headers=_preflight_headers(OTHER_ORIGIN)
    )

    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


async def test_request_from_another_origin_gets_no_allow_origin(
    cors_client: httpx.AsyncClient, new_account: Account
) -> None:
    response = await cors_client.get(
        new_account.tasks_url, headers={**new_account.headers, "Origin": OTHER_ORIGIN}
    )

    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


async def test_no_origin_is_allowed_by_default(
    client: httpx.AsyncClient, new_account: Account
) -> None:
    preflight = await client.options(new_account.tasks_url, headers=_preflight_headers(SPA_ORIGIN))
    response = await client.get(
        new_account.tasks_url, headers={**new_account.headers, "Origin": SPA_ORIGIN}
    )

    assert "access-control-allow-origin" not in preflight.headers
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
