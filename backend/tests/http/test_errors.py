"""The one place errors become HTTP: a stable JSON shape, and nothing internal in the body."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import text

from app.auth.errors import AuthenticationError, InvalidTokenError, RateLimitedError
from app.db.deps import DatabaseDep
from app.db.errors import DatabaseTimeoutError, DatabaseUnavailableError, translate_database_error
from app.db.statements import compile_statement
from app.http.errors import (
    AppError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    ValidationFailedError,
)
from app.main import create_app
from tests.fixtures.app import make_settings
from tests.fixtures.logs import LogOutput

RAISED: dict[str, AppError] = {
    "not-found": NotFoundError(),
    "conflict": ConflictError("That name is taken"),
    "validation": ValidationFailedError(),
    "authentication": AuthenticationError(),
    "invalid-token": InvalidTokenError(),
    "permission": PermissionDeniedError(),
    "rate-limited": RateLimitedError(30),
    "database-unavailable": DatabaseUnavailableError(),
    "database-timeout": DatabaseTimeoutError(),
}


@pytest.fixture(scope="module")
async def errors_client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The real app plus a few routes that fail on purpose."""
    app = create_app(make_settings(database_url, db_statement_timeout_seconds=0.3))

    async def raise_app_error(name: str) -> None:
        raise RAISED[name]

    async def crash() -> None:
        raise RuntimeError("internal detail 42")

    async def bad_sql(database: DatabaseDep) -> None:
        await database.fetch_value(
            compile_statement(text("SELECT secret_column FROM no_such_table"))
        )

    async def slow_sql(database: DatabaseDep) -> None:
        await database.fetch_value(compile_statement(text("SELECT pg_sleep(5)")))

    app.add_api_route("/test/raise/{name}", raise_app_error)
    app.add_api_route("/test/crash", crash)
    app.add_api_route("/test/bad-sql", bad_sql)
    app.add_api_route("/test/slow-sql", slow_sql)
    async with LifespanManager(app) as manager:
        # An unexpected exception is answered, then re-raised to the server (which logs it);
        # the client sees the answer, as over a real socket.
        transport = httpx.ASGITransport(app=manager.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


@pytest.mark.parametrize(
    ("name", "status", "body", "headers"),
    [
        ("not-found", 404, {"detail": "Not found", "code": "not_found"}, {}),
        ("conflict", 409, {"detail": "That name is taken", "code": "conflict"}, {}),
        (
            "validation",
            422,
            {
                "detail": "Request validation failed",
                "code": "validation_error",
                "errors": [
                    {
                        "loc": ["body"],
                        "msg": "Request validation failed",
                        "type": "validation_error",
                    }
                ],
            },
            {},
        ),
        (
            "authentication",
            401,
            {"detail": "Not authenticated", "code": "not_authenticated"},
            {"WWW-Authenticate": "Bearer"},
        ),
        (
            "invalid-token",
            401,
            {"detail": "Invalid access token", "code": "invalid_token"},
            {
                "WWW-Authenticate": 'Bearer error="invalid_token", '
                'error_description="The access token is invalid"'
            },
        ),
        (
            "permission",
            403,
            {"detail": "Not allowed to access this resource", "code": "forbidden"},
            {},
        ),
        (
            "rate-limited",
            429,
            {"detail": "Too many attempts; try again later", "code": "rate_limited"},
            {"Retry-After": "30"},
        ),
        (
            "database-unavailable",
            503,
            {
                "detail": "The database is unavailable; retry shortly",
                "code": "database_unavailable",
            },
            {"Retry-After": "5"},
        ),
        (
            "database-timeout",
            503,
            {
                "detail": "The database did not answer in time; retry shortly",
                "code": "database_timeout",
            },
            {"Retry-After": "5"},
        ),
    ],
)
async def test_app_errors_map_to_status_code_body_and_headers(
    errors_client: httpx.AsyncClient,
    name: str,
    status: int,
    body: dict[str, object],
    headers: dict[str, str],
) -> None:
    response = await errors_client.get(f"/test/raise/{name}")

    assert response.status_code == status
    assert response.json() == body
    for header, value in headers.items():
        assert response.headers[header] == value


async def test_an_unknown_route_is_a_json_404(errors_client: httpx.AsyncClient) -> None:
    response = await errors_client.get("/no/such/route")

    assert response.status_code == 404
    assert response.json() == {"detail": "Not found", "code": "not_found"}


async def test_a_wrong_method_is_a_json_405(errors_client: httpx.AsyncClient) -> None:
    response = await errors_client.delete("/health")

    assert response.status_code == 405
    assert response.json() == {"detail": "Method not allowed", "code": "method_not_allowed"}


async def test_invalid_input_names_the_field_and_never_echoes_the_value(
    errors_client: httpx.AsyncClient,
) -> None:
    response = await errors_client.post(
        "/api/auth/signup", json={"email": "someone@example.com", "password": "Qz!"}
    )

    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "validation_error"
    assert body["detail"] == "Password must be at least 8 characters long."
    assert [error["loc"] for error in body["errors"]] == [["body", "password"]]
    assert set(body["errors"][0]) == {"loc", "msg", "type"}
    assert "Qz!" not in response.text


async def test_an_unexpected_exception_is_a_generic_500_and_logged_with_its_traceback(
    errors_client: httpx.AsyncClient, log_output: LogOutput
) -> None:
    response = await errors_client.get("/test/crash", headers={"X-Request-ID": "crash-1"})

    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error", "code": "internal_error"}
    # Still inside the request's context: the answer and the log line carry its id, and the
    # answer has the headers every response has.
    assert response.headers["X-Request-ID"] == "crash-1"
    assert response.headers["Cache-Control"] == "no-store"
    [logged] = log_output.records(event="unhandled_error")
    assert logged["request_id"] == "crash-1"
    assert "RuntimeError: internal detail 42" in logged["exception"]
    assert "Traceback" in logged["exception"]


async def test_a_failing_query_is_a_generic_500_with_the_sql_in_the_log_only(
    errors_client: httpx.AsyncClient, log_output: LogOutput
) -> None:
    response = await errors_client.get("/test/bad-sql")

    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error", "code": "internal_error"}
    [logged] = log_output.records(event="unhandled_error")
    assert "no_such_table" in logged["exception"]


async def test_a_statement_timeout_is_a_503_to_retry(
    errors_client: httpx.AsyncClient, log_output: LogOutput
) -> None:
    response = await errors_client.get("/test/slow-sql")

    assert response.status_code == 503
    assert response.json() == {
        "detail": "The database did not answer in time; retry shortly",
        "code": "database_timeout",
    }
    assert response.headers["Retry-After"] == "5"
    [logged] = log_output.records(event="database_error")
    assert logged["error_code"] == "database_timeout"


@pytest.mark.parametrize(
    ("driver_error", "expected"),
    [
        pytest.param(asyncpg.InterfaceError("connection is closed"), DatabaseUnavailableError),
        pytest.param(
            asyncpg.ConnectionDoesNotExistError("closed in the middle of operation"),
            DatabaseUnavailableError,
        ),
        pytest.param(asyncpg.CannotConnectNowError("starting up"), DatabaseUnavailableError),
        pytest.param(
            asyncpg.InternalClientError("another operation (2) is in progress"),
            DatabaseUnavailableError,
        ),
        pytest.param(asyncpg.QueryCanceledError("statement timeout"), DatabaseTimeoutError),
        pytest.param(TimeoutError(), DatabaseTimeoutError),
        pytest.param(ConnectionRefusedError(), DatabaseUnavailableError),
        # Not outages: retrying would not help, so no 503 and no startup retries.
        pytest.param(asyncpg.exceptions.ClientConfigurationError("bad option"), None),
        pytest.param(asyncpg.exceptions._base.DataError("invalid input for $1"), None),
        pytest.param(asyncpg.UndefinedTableError("no such table"), None),
        pytest.param(asyncpg.RaiseError("refused by a trigger"), None),
    ],
)
def test_the_drivers_own_errors_translate_like_the_wrapped_ones(
    driver_error: BaseException, expected: type[AppError] | None
) -> None:
    translated = translate_database_error(driver_error)

    assert type(translated) is expected if expected else translated is None
