"""The one place that turns errors into HTTP responses.

Tracebacks, SQL and driver messages go to the log only; clients get the `AppError` body.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from app.db.errors import DATABASE_ERROR_TYPES, translate_database_error
from app.http.errors import (
    AppError,
    ErrorCode,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    ValidationFailedError,
)
from app.http.validation import describe, error_items, readable_locations

logger = structlog.get_logger("app.errors")


def error_response(error: AppError) -> JSONResponse:
    body: dict[str, Any] = {"detail": error.detail, "code": error.code, **error.extra}
    if isinstance(error, ValidationFailedError):
        # Every 422 has the same shape, whichever layer refused the input.
        body["errors"] = [{"loc": list(error.location), "msg": error.detail, "type": error.code}]
    return JSONResponse(body, status_code=error.status_code, headers=error.headers)


async def _handle_app_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return error_response(exc)


# Starlette's and FastAPI's own HTTPExceptions, as our errors; any other status keeps it, with
# the generic code.
_HTTP_EXCEPTION_ERRORS: dict[int, type[AppError]] = {
    404: NotFoundError,
    405: MethodNotAllowedError,
    413: PayloadTooLargeError,
}


# nginx's "client closed request": what the access line and the metrics record when the
# client went away before its request was read; nobody receives it.
CLIENT_CLOSED_REQUEST = 499


def client_gone_response() -> Response:
    logger.info("client_disconnected")
    return Response(status_code=CLIENT_CLOSED_REQUEST)


async def _handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.__cause__, ClientDisconnect):
        # FastAPI turns any failure to read the body into a 400, a vanished client included.
        return client_gone_response()
    if exc.status_code == 400:
        # FastAPI's answer to a body it cannot decode (e.g. not UTF-8): bad input like any
        # other malformed body, so the same 422 as invalid JSON.
        return error_response(ValidationFailedError("The request body is not valid JSON."))
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
    error = _HTTP_EXCEPTION_ERRORS.get(exc.status_code)
    if error is not None:
        return error_response(error(headers=headers))
    return JSONResponse(
        {"detail": exc.detail, "code": ErrorCode.HTTP_ERROR},
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
    errors = readable_locations(exc.errors())
    return JSONResponse(
        {
            "detail": describe(errors),
            "code": ErrorCode.VALIDATION_ERROR,
            "errors": error_items(errors),
        },
        status_code=422,
    )


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
    for database_error in DATABASE_ERROR_TYPES:
        app.add_exception_handler(database_error, _handle_database_error)
    app.add_exception_handler(Exception, _handle_unexpected)
