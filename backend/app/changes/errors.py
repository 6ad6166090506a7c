from __future__ import annotations

from app.http.errors import ErrorCode, GoneError, ValidationFailedError


class CursorExpiredError(GoneError):
    code = ErrorCode.CURSOR_EXPIRED
    message = (
        "The change feed no longer holds everything after this cursor (or never issued it); "
        "sync in full: request /changes without since"
    )


class InvalidChangeCursorError(ValidationFailedError):
    code = ErrorCode.INVALID_CURSOR
    location = ("query", "since")
    message = "The since cursor is invalid; use the cursor of a previous answer"
