"""The application's error tree and the one place that turns errors into HTTP responses.

Routes and repositories raise `AppError` subclasses; driver and framework errors are translated
here. Bodies are always ``{"detail": <message>, "code": <stable code>}``; tracebacks, SQL and
driver messages go to the log only.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import asyncpg
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = structlog.get_logger("app.errors")

RETRY_AFTER_SECONDS = "5"


class AppError(Exception):
    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    message: ClassVar[str] = "Internal server error"

    def __init__(self, message: str | None = None, *, headers: Mapping[str, str] | None = None):
        self.detail = message or self.message
        self.headers = dict(headers or {})
        super().__init__(self.detail)


class NotFoundError(AppError):
    status_code = 404
    code = "not_found"
    message = "Not found"


class ConflictError(AppError):
    status_code = 409
    code = "conflict"
    message = "Conflict"


class ValidationFailedError(AppError):
    status_code = 422
    code = "validation_error"
    message = "Request validation failed"
    # Where the bad value was, as in FastAPI's own validation errors.
    location: ClassVar[tuple[str, ...]] = ("body",)


class AuthenticationError(AppError):
    status_code = 401
    code = "not_authenticated"
    message = "Not authenticated"

    def __init__(self, message: str | None = None, *, headers: Mapping[str, str] | None = None):
        super().__init__(message, headers={"WWW-Authenticate": "Bearer", **(headers or {})})


class InvalidTokenError(AuthenticationError):
    code = "invalid_token"
    message = "Invalid or expired token"


class InvalidCredentialsError(AuthenticationError):
    code = "invalid_credentials"
    message = "Incorrect email or password"


class PermissionDeniedError(AppError):
    status_code = 403
    code = "forbidden"
    message = "Not allowed to access this resource"


class PayloadTooLargeError(AppError):
    status_code = 413
    code = "request_too_large"
    message = "Request body too large"


class RateLimitedError(AppError):
    status_code = 429
    code = "rate_limited"
    message = "Too many attempts; try again later"

    def __init__(self, retry_after_seconds: int):
        super().__init__(headers={"Retry-After": str(max(1, retry_after_seconds))})


class DatabaseUnavailableError(AppError):
    status_code = 503
    code = "database_unavailable"
    message = "The database is unavailable; retry shortly"

    def __init__(self, message: str | None = None):
        super().__init__(message, headers={"Retry-After": RETRY_AFTER_SECONDS})


class DatabaseTimeoutError(DatabaseUnavailableError):
    code = "database_timeout"
    message = "The database did not answer in time; retry shortly"


class ErrorBody(BaseModel):
    """Every error response has this shape (documented in OpenAPI)."""

    detail: str
    code: str


class ValidationErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorBody(ErrorBody):
    errors: list[ValidationErrorItem]


ERROR_DESCRIPTIONS = {
    401: "Missing, malformed, invalid or expired bearer token",
    403: "The path's user_id is not the authenticated user",
    404: "Not found (or not yours)",
    409: "Conflicts with existing data",
    413: "Request body too large",
    422: "Invalid input",
    429: "Too many attempts",
    503: "Database unavailable or too slow; retry after Retry-After seconds",
}


def error_responses(*status_codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the errors a route can return."""
    return {
        code: {
            "model": ValidationErrorBody if code == 422 else ErrorBody,
            "description": ERROR_DESCRIPTIONS[code],
        }
        for code in status_codes
    }


def error_response(error: AppError) -> JSONResponse:
    body: dict[str, Any] = {"detail": error.detail, "code": error.code}
    if isinstance(error, ValidationFailedError):
        # Every 422 has the same shape, whichever layer refused the input.
        body["errors"] = [{"loc": list(error.location), "msg": error.detail, "type": error.code}]
    return JSONResponse(
        body,
        status_code=error.status_code,
        headers=error.headers,
    )


def translate_database_error(exc: BaseException) -> AppError | None:
    """Map a driver/pool failure to the error a client should see, or None if it is not one.

    Connection-level failures (refused, reset, timed out, pool exhausted, server shutting down)
    mean "try again"; they are never a 500. Takes SQLAlchemy's wrapped errors (session routes)
    and asyncpg's own (the hot path's driver-level statements) alike.
    """
    if isinstance(exc, sa_exc.TimeoutError):  # pool checkout timed out
        return DatabaseUnavailableError("The database is busy; retry shortly")
    if isinstance(exc, sa_exc.DBAPIError):
        # The adapter's error (orig) wraps asyncpg's own, which carries the SQLSTATE.
        orig = exc.orig
        translated = _translate_driver_error((orig.__cause__ or orig) if orig else exc)
        if translated is None and (
            exc.connection_invalidated
            or isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError)
        ):
            return DatabaseUnavailableError()
        return translated
    return _translate_driver_error(exc)


def _translate_driver_error(exc: BaseException) -> AppError | None:
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate == "57014" or isinstance(exc, TimeoutError):  # query_canceled; 3.11+ asyncio's
        return DatabaseTimeoutError()
    if type(exc) is asyncpg.InterfaceError:  # "connection is closed"; not its subclasses,
        return DatabaseUnavailableError()  # which are client configuration or argument errors
    if isinstance(exc, asyncpg.InternalClientError):
        # A connection the server was closing as it was lent out (its FATAL read, its EOF
        # not yet): the statement was never sent, and the connection is discarded.
        return DatabaseUnavailableError()
    if sqlstate and sqlstate[:2] in ("08", "53", "57"):  # connection, resources, shutdown
        return DatabaseUnavailableError()
    if isinstance(exc, ssl.SSLCertVerificationError):
        # The server's certificate (or its name) is not trusted: configuration, not an
        # outage. Retrying will not fix it, so it must not hide behind "retry shortly".
        return None
    if isinstance(exc, OSError):  # ConnectionRefusedError, socket.gaierror, ... on connect
        return DatabaseUnavailableError()
    return None


async def _handle_app_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return error_response(exc)


async def _handle_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        # FastAPI's answer to a body it cannot decode (e.g. not UTF-8): bad input like any
        # other malformed body, so the same 422 as invalid JSON.
        return error_response(ValidationFailedError("Request body is not valid JSON"))
    codes = {404: "not_found", 405: "method_not_allowed", 413: PayloadTooLargeError.code}
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
    return JSONResponse(
        {"detail": exc.detail, "code": codes.get(exc.status_code, "http_error")},
        status_code=exc.status_code,
        headers=headers,
    )


def _allowed_methods(request: Request) -> str | None:
    """Every documented method of the path, not just the first route Starlette matched
    (FastAPI has one route per method, so Starlette's own Allow lists only one)."""
    route = request.scope.get("route")
    paths = request.app.openapi().get("paths", {})
    operations = paths.get(getattr(route, "path", None), {})
    methods = sorted(method.upper() for method in operations if method != "parameters")
    return ", ".join(methods) or None


async def _handle_validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [_summarise(error) for error in exc.errors()]
    first = errors[0] if errors else None
    detail = (
        f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
        if first
        else ValidationFailedError.message
    )
    return JSONResponse(
        {"detail": detail, "code": ValidationFailedError.code, "errors": errors},
        status_code=422,
    )


def _summarise(error: Mapping[str, Any]) -> dict[str, Any]:
    # Only location, message and type: pydantic's "input" and "ctx" may echo a password.
    loc: Sequence[str | int] = error.get("loc", ())
    return {"loc": list(loc), "msg": str(error.get("msg", "")), "type": str(error.get("type"))}


async def _handle_database_error(request: Request, exc: Exception) -> JSONResponse:
    error = translate_database_error(exc)
    if error is None:
        return await _handle_unexpected(request, exc)
    logger.warning(
        "database_error",
        error_code=error.code,
        error_type=type(exc).__name__,
        error=str(getattr(exc, "orig", exc))[:500],
    )
    return error_response(error)


async def _handle_unexpected(_: Request, exc: Exception) -> JSONResponse:
    logger.error("unhandled_error", exc_info=exc)
    return error_response(AppError())


def register_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _handle_app_error)
    app.add_exception_handler(StarletteHTTPException, _handle_http_exception)
    app.add_exception_handler(RequestValidationError, _handle_validation_error)
    for database_error in (
        sa_exc.DBAPIError,
        sa_exc.TimeoutError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        asyncpg.InternalClientError,
        OSError,
    ):
        app.add_exception_handler(database_error, _handle_database_error)
    app.add_exception_handler(Exception, _handle_unexpected)
