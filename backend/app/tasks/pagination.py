"""Opaque keyset cursors for the newest-first task list: the (created_at, id) of the last row."""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime

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
            cursor = cls(created_at=datetime.fromisoformat(created_at), id=uuid.UUID(task_id))
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise InvalidCursorError() from None
        if cursor.created_at.tzinfo is None:
            raise InvalidCursorError()
        return cursor
