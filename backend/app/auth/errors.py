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
    message = "Invalid access token"
    # RFC 6750 section 3: the challenge names the error, so a client library can tell it apart.
    challenge = 'Bearer error="invalid_token", error_description="The access token is invalid"'

    def __init__(self, message: str | None = None):
        super().__init__(message, headers={"WWW-Authenticate": self.challenge})


class AccessTokenExpiredError(InvalidTokenError):
    """A good token past its ``exp``: the client refreshes (POST /api/auth/refresh) and retries,
    where any other bad token means logging in again."""

    code = ErrorCode.TOKEN_EXPIRED
    message = "The access token expired; refresh it"
    challenge = 'Bearer error="invalid_token", error_description="The access token expired"'


class UserGoneError(InvalidTokenError):
    """A token with a valid signature whose user no longer exists (deleted since it was
    issued): to the client the same 401 as any other token that cannot be trusted."""


class WrongPasswordError(AppError):
    """The current password, asked again before a sensitive change, is wrong: 403, not 401, so
    a client does not take it for an ended session."""

    status_code, code, message = 403, ErrorCode.WRONG_PASSWORD, "The password is incorrect"


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


class RateLimitUnavailableError(AppError):
    """The shared rate-limit storage (Redis) cannot be reached and RATE_LIMIT_WHEN_UNAVAILABLE
    is closed: the auth request is refused rather than let through unlimited."""

    status_code = 503
    code = ErrorCode.RATE_LIMIT_UNAVAILABLE
    message = "Sign-in is briefly unavailable; try again shortly"

    def __init__(self, retry_after_seconds: int):
        super().__init__(headers={"Retry-After": str(max(1, retry_after_seconds))})


class ExportsBusyError(RateLimitedError):
    message = "Too many exports are running; try again shortly"
