from __future__ import annotations

from app.http.errors import ConflictError, ErrorCode, ValidationFailedError


class AnchorNotFoundError(ConflictError):
    """The item named by before_id or after_id is not (or no longer) in the target list."""

    code = ErrorCode.ANCHOR_NOT_FOUND
    message = "before_id or after_id does not name a live item of the target list"


class AnchorIsItselfError(ValidationFailedError):
    message = "An item cannot be placed before or after itself"
