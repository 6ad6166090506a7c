"""The application's error tree, the `ErrorCode` enum and the bodies OpenAPI documents for it.

Routes and repositories raise `AppError` subclasses; each domain (auth/errors.py,
tasks/errors.py) and the database boundary (db/errors.py) define theirs on top of these.
Bodies are always ``{"detail": <message>, "code": <ErrorCode>}``; `handlers.py` renders them.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import BaseModel, Field


class ErrorCode(StrEnum):
    """Every ``code`` an error body can carry: the stable part of an error a program branches
    on. Codes are only ever added, so a client should treat one it does not know as it treats
    the response's status."""

    INTERNAL_ERROR = "internal_error"
    HTTP_ERROR = "http_error"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    CONFLICT = "conflict"
    FORBIDDEN = "forbidden"
    REQUEST_TOO_LARGE = "request_too_large"
    REQUEST_HEADER_TOO_LARGE = "request_header_too_large"
    REQUEST_TARGET_TOO_LONG = "request_target_too_long"
    REQUEST_TIMEOUT = "request_timeout"
    VALIDATION_ERROR = "validation_error"
    INVALID_HOST = "invalid_host"
    NOT_AUTHENTICATED = "not_authenticated"
    INVALID_TOKEN = "invalid_token"  # noqa: S105 (a code, not a secret)
    TOKEN_EXPIRED = "token_expired"  # noqa: S105
    INVALID_REFRESH_TOKEN = "invalid_refresh_token"  # noqa: S105
    REFRESH_TOKEN_REUSED = "refresh_token_reused"  # noqa: S105
    CSRF_REJECTED = "csrf_rejected"
    SESSION_NOT_FOUND = "session_not_found"
    WRONG_PASSWORD = "wrong_password"  # noqa: S105
    INVALID_CREDENTIALS = "invalid_credentials"
    EMAIL_TAKEN = "email_taken"
    RATE_LIMITED = "rate_limited"
    RATE_LIMIT_UNAVAILABLE = "rate_limit_unavailable"
    TOO_MANY_STREAMS = "too_many_streams"
    TASK_NOT_FOUND = "task_not_found"
    TASK_EXISTS = "task_exists"
    LIST_NOT_FOUND = "list_not_found"
    LIST_EXISTS = "list_exists"
    DEFAULT_LIST_PROTECTED = "default_list_protected"
    ANCHOR_NOT_FOUND = "anchor_not_found"
    VERSION_CONFLICT = "version_conflict"
    PRECONDITION_REQUIRED = "precondition_required"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    IDEMPOTENCY_KEY_IN_USE = "idempotency_key_in_use"
    INVALID_CURSOR = "invalid_cursor"
    CURSOR_EXPIRED = "cursor_expired"
    DATABASE_UNAVAILABLE = "database_unavailable"
    DATABASE_TIMEOUT = "database_timeout"
    SHUTTING_DOWN = "shutting_down"
    LIVE_UPDATES_UNAVAILABLE = "live_updates_unavailable"


class AppError(Exception):
    status_code: ClassVar[int] = 500
    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL_ERROR
    message: ClassVar[str] = "Internal server error"

    def __init__(
        self,
        message: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ):
        self.detail = message or self.message
        self.headers = dict(headers or {})
        # Members of the body besides detail and code (a 412's current resource).
        self.extra = dict(extra or {})
        super().__init__(self.detail)


# Each error is one row of the contract: its status, its stable code and its default message.
class NotFoundError(AppError):
    status_code, code, message = 404, ErrorCode.NOT_FOUND, "Not found"


class MethodNotAllowedError(AppError):
    status_code, code, message = 405, ErrorCode.METHOD_NOT_ALLOWED, "Method not allowed"


class ConflictError(AppError):
    status_code, code, message = 409, ErrorCode.CONFLICT, "Conflict"


class GoneError(AppError):
    status_code, code, message = 410, ErrorCode.CURSOR_EXPIRED, "Gone"


class PreconditionFailedError(AppError):
    status_code, code, message = 412, ErrorCode.VERSION_CONFLICT, "Precondition failed"


class PreconditionRequiredError(AppError):
    status_code, code = 428, ErrorCode.PRECONDITION_REQUIRED
    message = "This write needs an If-Match header with the version it changes."


class ValidationFailedError(AppError):
    status_code, code, message = 422, ErrorCode.VALIDATION_ERROR, "Request validation failed"
    # Where the bad value was, as in FastAPI's own validation errors.
    location: ClassVar[tuple[str, ...]] = ("body",)


class PermissionDeniedError(AppError):
    status_code, code, message = 403, ErrorCode.FORBIDDEN, "Not allowed to access this resource"


class PayloadTooLargeError(AppError):
    status_code, code, message = 413, ErrorCode.REQUEST_TOO_LARGE, "Request body too large"


# Refused by the server's HTTP protocol (server_protocol.py) before the request reaches the
# app, so no route documents them; each closes the connection.
class RequestHeadTooLargeError(AppError):
    status_code, code = 431, ErrorCode.REQUEST_HEADER_TOO_LARGE
    message = "Request line and headers too large"


class RequestTargetTooLongError(AppError):
    status_code, code, message = 414, ErrorCode.REQUEST_TARGET_TOO_LONG, "Request target too long"


class RequestHeadTimeoutError(AppError):
    status_code, code = 408, ErrorCode.REQUEST_TIMEOUT
    message = "Request line and headers not received in time"


class ErrorBody(BaseModel):
    """Every error response has this shape."""

    detail: str = Field(description="What went wrong, in a sentence fit to show a person")
    code: ErrorCode


class ValidationErrorItem(BaseModel):
    loc: list[str | int] = Field(description="Where: body, query, path or header, then the field")
    msg: str
    type: str = Field(description="pydantic's error type, e.g. string_too_short")


class ValidationErrorBody(ErrorBody):
    errors: list[ValidationErrorItem]


RETRY_AFTER_HEADER = {
    "Retry-After": {
        "schema": {"type": "integer", "minimum": 1},
        "description": "Seconds to wait before trying again",
    }
}
_CHALLENGE = {
    "WWW-Authenticate": {
        "schema": {"type": "string"},
        "description": "The bearer challenge (RFC 6750)",
    }
}
ERROR_DESCRIPTIONS = {
    401: "Missing, malformed, invalid or expired bearer token",
    403: "The path's user_id is not the authenticated user",
    404: "Not found (or not yours)",
    409: "Conflicts with existing data",
    410: "cursor_expired: the feed no longer holds what this cursor needs; sync in full",
    412: "If-Match names a version that is not the current one",
    413: "Request body too large",
    422: "Invalid input",
    428: "If-Match is required (REQUIRE_IF_MATCH) and was not sent",
    429: "Too many attempts; retry after Retry-After seconds",
    503: (
        "The database (or, on sign-in routes, the rate-limit store) is unavailable or too"
        " slow; retry after Retry-After seconds"
    ),
}
ERROR_HEADERS: dict[int, dict[str, Any]] = {
    401: _CHALLENGE,
    429: RETRY_AFTER_HEADER,
    503: RETRY_AFTER_HEADER,
}
# On every operation (FastAPI(responses=...)): the answer to a bug, so generated clients know
# its body too.
UNEXPECTED_ERROR_RESPONSE: dict[int | str, dict[str, Any]] = {
    "default": {
        "model": ErrorBody,
        "description": "Unexpected error (500, code internal_error); X-Request-ID finds it in "
        "the server's log",
    }
}


def error_responses(
    *status_codes: int, descriptions: Mapping[int, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the errors a route can return; ``descriptions``
    replaces the generic wording where a route means something narrower."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status_code in status_codes:
        entry: dict[str, Any] = {
            "model": ValidationErrorBody if status_code == 422 else ErrorBody,
            "description": (descriptions or {}).get(status_code, ERROR_DESCRIPTIONS[status_code]),
        }
        if status_code in ERROR_HEADERS:
            entry["headers"] = ERROR_HEADERS[status_code]
        responses[status_code] = entry
    return responses
