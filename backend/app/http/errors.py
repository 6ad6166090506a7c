"""The application's error tree and the bodies OpenAPI documents for it.

Routes and repositories raise `AppError` subclasses; each domain (auth/errors.py,
tasks/errors.py) and the database boundary (db/errors.py) define theirs on top of these.
Bodies are always ``{"detail": <message>, "code": <stable code>}``; `handlers.py` renders them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel


class AppError(Exception):
    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    message: ClassVar[str] = "Internal server error"

    def __init__(self, message: str | None = None, *, headers: Mapping[str, str] | None = None):
        self.detail = message or self.message
        self.headers = dict(headers or {})
        super().__init__(self.detail)


# Each error is one row of the contract: its status, its stable code and its default message.
class NotFoundError(AppError):
    status_code, code, message = 404, "not_found", "Not found"


class ConflictError(AppError):
    status_code, code, message = 409, "conflict", "Conflict"


class ValidationFailedError(AppError):
    status_code, code, message = 422, "validation_error", "Request validation failed"
    # Where the bad value was, as in FastAPI's own validation errors.
    location: ClassVar[tuple[str, ...]] = ("body",)


class PermissionDeniedError(AppError):
    status_code, code, message = 403, "forbidden", "Not allowed to access this resource"


class PayloadTooLargeError(AppError):
    status_code, code, message = 413, "request_too_large", "Request body too large"


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
