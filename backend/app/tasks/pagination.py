"""Opaque keyset cursors for the newest-first listings: the (time, id) of the last row, where the
time is what the listing is ordered by (created_at for the tasks, deleted_at for the trash).

A cursor is 24 bytes (microseconds since the epoch, the task id) in URL-safe base64: always 32
characters, so OpenAPI can describe exactly what a valid cursor looks like. Any such string is a
position in the list (an impossible time is clamped to the representable range); anything else
is the client's error (422), never a server error.
"""

from __future__ import annotations

import base64
import re
import struct
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Query
from pydantic import StringConstraints
from pydantic.json_schema import SkipJsonSchema

from app.tasks.errors import InvalidCursorError

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{32}$"

_LAYOUT = struct.Struct(">q16s")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_MIN_MICROS = (datetime.min.replace(tzinfo=UTC) - _EPOCH) // _MICROSECOND
_MAX_MICROS = (datetime.max.replace(tzinfo=UTC) - _EPOCH) // _MICROSECOND
_VALID = re.compile(CURSOR_PATTERN)

# The query parameters of a keyset listing (the task list, the trash).
PageLimit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)]
PageCursor = Annotated[
    Annotated[str, StringConstraints(pattern=CURSOR_PATTERN)] | SkipJsonSchema[None],
    Query(description="From the previous page's Link header"),
]


@dataclass(frozen=True)
class Cursor:
    at: datetime
    id: uuid.UUID

    def encode(self) -> str:
        micros = (self.at - _EPOCH) // _MICROSECOND
        return base64.urlsafe_b64encode(_LAYOUT.pack(micros, self.id.bytes)).decode()

    @classmethod
    def decode(cls, token: str) -> Cursor:
        if not _VALID.fullmatch(token):
            raise InvalidCursorError()
        micros, id_bytes = _LAYOUT.unpack(base64.urlsafe_b64decode(token))
        micros = min(max(micros, _MIN_MICROS), _MAX_MICROS)
        return cls(at=_EPOCH + micros * _MICROSECOND, id=uuid.UUID(bytes=id_bytes))
