"""CORS for the SPA: only configured origins, on every answer the app can give (errors, the
last resort's 500 and the body cap's 413 included), with configurable header lists, and in
credentials mode only on the auth routes that set or read the refresh cookie."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from starlette.types import Receive, Scope, Send

from app.http.cors import CREDENTIALED_PATHS, CrossOriginMiddleware
from app.main import create_app
from tests.fixtures.accounts import LOGIN_URL, ME_URL, PASSWORD, SIGNUP_URL, TOKEN_URL, Account
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


def _preflight_headers(
    origin: str, headers: str = "authorization, content-type", method: str = "PATCH"
) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers,
    }


def _listed(response: httpx.Response, header: str) -> set[str]:
    value = response.headers.get(header, "")
    return {name.strip().lower() for name in value.split(",") if name.strip()}


def _assert_readable_by_the_spa(response: httpx.Response) -> None:
    assert response.headers["access-control-allow-origin"] == SPA_ORIGIN
    assert _listed(response, "access-control-expose-headers") >= DEFAULT_EXPOSED


def _assert_credentialed(response: httpx.Response) -> None:
    assert response.headers["access-control-allow-origin"] == SPA_ORIGIN
    assert response.headers["access-control-allow-credentials"] == "true"


def _assert_not_credentialed(response: httpx.Response) -> None:
    assert response.headers["access-control-allow-origin"] == SPA_ORIGIN
    assert "access-control-allow-credentials" not in response.headers


def _cookie_request(origin: str = SPA_ORIGIN) -> dict[str, str]:
    """What the SPA's credentialed fetch sends (a simple request's Origin, the CSRF header)."""
    return {"Origin": origin, "X-Requested-With": "fetch"}


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


@pytest.mark.parametrize("path", sorted(CREDENTIALED_PATHS))
async def test_a_preflight_to_a_credentialed_path_allows_credentials(
    cors_client: httpx.AsyncClient, path: str
) -> None:
    # A preflight never reaches the routes, so refresh and logout are answered here already.
    response = await cors_client.options(
        path, headers=_preflight_headers(SPA_ORIGIN, "content-type, x-requested-with", "POST")
    )

    assert response.status_code == 200, response.text
    _assert_credentialed(response)
    assert {"content-type", "x-requested-with"} <= _listed(response, "access-control-allow-headers")


async def test_sign_up_and_login_allow_credentials(cors_client: httpx.AsyncClient) -> None:
    body = {"email": "cookie-user@example.com", "password": PASSWORD}

    created = await cors_client.post(SIGNUP_URL, json=body, headers=_cookie_request())
    logged_in = await cors_client.post(LOGIN_URL, json=body, headers=_cookie_request())

    assert created.status_code == 201, created.text
    assert logged_in.status_code == 200, logged_in.text
    for response in (created, logged_in):
        _assert_credentialed(response)
        _assert_readable_by_the_spa(response)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"email": "not-an-email"}, 422, "validation_error"),
        ({"email": "a@example.com", "password": "x" * 2000}, 413, "request_too_large"),
    ],
    ids=["invalid", "too-large"],
)
async def test_an_error_on_a_credentialed_path_allows_credentials(
    cors_client: httpx.AsyncClient, body: dict[str, str], status: int, code: str
) -> None:
    response = await cors_client.post(LOGIN_URL, json=body, headers=_cookie_request())

    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    _assert_credentialed(response)
    _assert_readable_by_the_spa(response)


async def test_task_routes_and_the_other_auth_routes_do_not_allow_credentials(
    cors_client: httpx.AsyncClient, new_account: Account
) -> None:
    headers = {**new_account.headers, "Origin": SPA_ORIGIN}
    answers = [
        await cors_client.get(new_account.tasks_url, headers=headers),
        await cors_client.post(new_account.tasks_url, json={"title": "t"}, headers=headers),
        await cors_client.get(ME_URL, headers=headers),
        *[
            await cors_client.options(path, headers=_preflight_headers(SPA_ORIGIN))
            for path in (new_account.tasks_url, ME_URL, TOKEN_URL)
        ],
    ]

    assert [response.status_code for response in answers] == [200, 201, 200, 200, 200, 200]
    for response in answers:
        _assert_not_credentialed(response)


async def test_another_origin_gets_no_cors_headers_on_a_credentialed_path(
    cors_client: httpx.AsyncClient, new_account: Account
) -> None:
    preflight = await cors_client.options(
        LOGIN_URL, headers=_preflight_headers(OTHER_ORIGIN, "content-type", "POST")
    )
    login = await cors_client.post(
        LOGIN_URL,
        json={"email": new_account.email, "password": new_account.password},
        headers=_cookie_request(OTHER_ORIGIN),
    )

    assert preflight.status_code == 400
    assert login.status_code == 200  # CORS binds browsers, not servers
    for response in (preflight, login):
        assert "access-control-allow-origin" not in response.headers
        assert "access-control-allow-credentials" not in response.headers


async def _no_content(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def test_the_middleware_chooses_credentials_by_exact_path_and_allowed_origin() -> None:
    # The refresh and logout routes are not on this branch yet: the middleware alone, around
    # an app that answers every path.
    middleware = CrossOriginMiddleware(
        _no_content,
        origins=[SPA_ORIGIN],
        allow_headers=[],
        expose_headers=[],
        credentialed_paths=CREDENTIALED_PATHS,
    )
    transport = httpx.ASGITransport(app=middleware)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:

        async def post(path: str, headers: dict[str, str]) -> httpx.Response:
            response = await http.post(path, headers=headers)
            assert response.status_code == 204
            return response

        credentialed = [await post(path, _cookie_request()) for path in sorted(CREDENTIALED_PATHS)]
        near_misses = [
            await post(path, _cookie_request())
            for path in ("/api/auth/refresh/", "/api/auth/Refresh", "/api/auth", "/refresh")
        ]
        other_origin = await post("/api/auth/refresh", _cookie_request(OTHER_ORIGIN))
        no_origin = await post("/api/auth/refresh", {"X-Requested-With": "fetch"})

    for response in credentialed:
        _assert_credentialed(response)
    for response in near_misses:
        _assert_not_credentialed(response)
    for response in (other_origin, no_origin):
        assert "access-control-allow-origin" not in response.headers
        assert "access-control-allow-credentials" not in response.headers


def test_the_middleware_refuses_the_wildcard_origin() -> None:
    with pytest.raises(ValueError, match="explicitly"):
        CrossOriginMiddleware(
            _no_content,
            origins=[SPA_ORIGIN, "*"],
            allow_headers=[],
            expose_headers=[],
            credentialed_paths=CREDENTIALED_PATHS,
        )
