"""The account domain's errors: who is calling, and how often."""

from __future__ import annotations

from collections.abc import Mapping

from app.http.errors import AppError, ConflictError


class AuthenticationError(AppError):
    status_code = 401
    code = "not_authenticated"
    message = "Not authenticated"

    def __init__(self, message: str | None = None, *, headers: Mapping[str, str] | None = None):
        super().__init__(message, headers={"WWW-Authenticate": "Bearer", **(headers or {})})


class InvalidTokenError(AuthenticationError):
    code = "invalid_token"
    message = "Invalid or expired token"


class UserGoneError(InvalidTokenError):
    """A token with a valid signature whose user no longer exists (deleted since it was
    issued): to the client the same 401 as any other token that cannot be trusted."""


class InvalidCredentialsError(AuthenticationError):
    code = "invalid_credentials"
    message = "Incorrect email or password"


class EmailTakenError(ConflictError):
    code = "email_taken"
    message = "An account with this email already exists"


class RateLimitedError(AppError):
    status_code = 429
    code = "rate_limited"
    message = "Too many attempts; try again later"

    def __init__(self, retry_after_seconds: int):
        super().__init__(headers={"Retry-After": str(max(1, retry_after_seconds))})
