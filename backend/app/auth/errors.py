"""The account domain's errors: who is calling, and how often."""

from __future__ import annotations

from collections.abc import Mapping

from app.http.errors import AppError, ConflictError, ErrorCode


class AuthenticationError(AppError):
    status_code = 401
    code = ErrorCode.NOT_AUTHENTICATED
    message = "Not authenticated"

    def __init__(self, message: str | None = None, *, headers: Mapping[str, str] | None = None):
        super().__init__(message, headers={"WWW-Authenticate": "Bearer", **(headers or {})})


class InvalidTokenError(AuthenticationError):
    code = ErrorCode.INVALID_TOKEN
    message = "Invalid or expired token"


class UserGoneError(InvalidTokenError):
    """A token with a valid signature whose user no longer exists (deleted since it was
    issued): to the client the same 401 as any other token that cannot be trusted."""


class InvalidCredentialsError(AuthenticationError):
    code = ErrorCode.INVALID_CREDENTIALS
    message = "Incorrect email or password"


class EmailTakenError(ConflictError):
    code = ErrorCode.EMAIL_TAKEN
    message = "An account with this email already exists"


class RateLimitedError(AppError):
    status_code = 429
    code = ErrorCode.RATE_LIMITED
    message = "Too many attempts; try again later"

    def __init__(self, retry_after_seconds: int):
        super().__init__(headers={"Retry-After": str(max(1, retry_after_seconds))})
