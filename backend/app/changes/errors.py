from __future__ import annotations

from app.http.errors import GoneError


class CursorExpiredError(GoneError):
    message = (
        "The change feed no longer holds everything after this cursor (or never issued it); "
        "sync in full: request /changes without since"
    )
