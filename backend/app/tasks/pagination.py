"""Opaque keyset cursors for the newest-first task list: the (created_at, id) of the last row."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from app.tasks.errors import InvalidCursorError

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500
MAX_CURSOR_LENGTH = 200


@dataclass(frozen=True)
class Cursor:
    created_at: datetime
    id: uuid.UUID

    def encode(self) -> str:
        raw = f"{self.created_at.isoformat()}|{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        """Any damage to the token is the client's error (422), never a server error."""
        if len(token) > MAX_CURSOR_LENGTH:
            raise InvalidCursorError()
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            created_at, task_id = raw.split("|")
            moment = datetime.fromisoformat(created_at)
            if moment.tzinfo is None:
                raise InvalidCursorError()
            # Normalised to UTC here: an offset that pushes the moment outside years 1..9999
            # must be the client's 422, not an OverflowError in the driver (a 500).
            return cls(created_at=moment.astimezone(UTC), id=uuid.UUID(task_id))
        except (ValueError, OverflowError):  # includes binascii.Error, UnicodeDecodeError
            raise InvalidCursorError() from None
