from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg
import orjson

from app.http.conditional import version_etag
from app.http.errors import ConflictError, ErrorCode, NotFoundError, PreconditionFailedError
from app.lists.schemas import list_json


class ListNotFoundError(NotFoundError):
    """Missing, deleted and not-yours are one answer."""

    code = ErrorCode.LIST_NOT_FOUND
    message = "List not found"


class ListExistsError(ConflictError):
    code = ErrorCode.LIST_EXISTS
    message = "A list with this id already exists; choose another id"


class DefaultListProtectedError(ConflictError):
    code = ErrorCode.DEFAULT_LIST_PROTECTED
    message = "The default list cannot be deleted"


class ListVersionConflictError(PreconditionFailedError):
    """412: the body carries the list as it is now."""

    code = ErrorCode.VERSION_CONFLICT
    message = "The list changed since the version in If-Match; its current state is in current"

    @classmethod
    def about(cls, row: Mapping[str, Any] | asyncpg.Record) -> ListVersionConflictError:
        return cls(
            headers={"ETag": version_etag(row["version"])},
            extra={"current": orjson.loads(list_json(row))},
        )
