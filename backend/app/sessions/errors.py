"""The session domain's errors: refresh tokens that cannot renew, and cross-site requests."""

from __future__ import annotations

from collections.abc import Mapping

from app.auth.errors import AuthenticationError
from app.http.errors import AppError, ErrorCode, NotFoundError


class InvalidRefreshTokenError(AuthenticationError):
    """Missing, malformed, forged, or of a session that ended or expired: log in again."""

    code = ErrorCode.INVALID_REFRESH_TOKEN
    message = "The refresh token is not valid (missing, expired or ended); log in again"

    def __init__(self, *, headers: Mapping[str, str] | None = None):
        super().__init__(headers=headers)


class RefreshTokenReusedError(InvalidRefreshTokenError):
    """A spent token presented again after the grace window: possibly stolen, so the whole
    session was ended."""

    code = ErrorCode.REFRESH_TOKEN_REUSED
    message = "This refresh token was already used; the session has been ended. Log in again"


class CsrfRejectedError(AppError):
    status_code, code = 403, ErrorCode.CSRF_REJECTED
    message = (
        "A cookie-authenticated request needs the X-Requested-With header and an allowed Origin"
    )


class SessionNotFoundError(NotFoundError):
    code, message = ErrorCode.SESSION_NOT_FOUND, "Session not found"
