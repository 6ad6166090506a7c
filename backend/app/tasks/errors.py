from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg
import orjson

from app.http.conditional import version_etag
from app.http.errors import (
    ConflictError,
    ErrorCode,
    NotFoundError,
    PreconditionFailedError,
    ValidationFailedError,
)
from app.tasks.due import UNKNOWN_ZONE
from app.tasks.schemas import task_fields_json


class TaskNotFoundError(NotFoundError):
    """Missing and not-yours are the same answer: another owner's task does not exist for you."""

    code = ErrorCode.TASK_NOT_FOUND
    message = "Task not found"


class InvalidCursorError(ValidationFailedError):
    code = ErrorCode.INVALID_CURSOR
    location = ("query", "cursor")
    message = "The pagination cursor is invalid; restart from the first page"


class TaskExistsError(ConflictError):
    code = ErrorCode.TASK_EXISTS
    message = "A task with this id already exists; choose another id"


class TaskVersionConflictError(PreconditionFailedError):
    """412: the body carries the task as it is now, so the client can merge without a GET."""

    code = ErrorCode.VERSION_CONFLICT
    message = "The task changed since the version in If-Match; its current state is in current"

    @classmethod
    def about(cls, task: Mapping[str, Any] | asyncpg.Record) -> TaskVersionConflictError:
        return cls(
            headers={"ETag": version_etag(task["version"])},
            extra={"current": orjson.loads(task_fields_json(task))},
        )


class TaskMovedMeanwhileError(ConflictError):
    """A move found the task in another list than the one it locked, three times over."""

    code = ErrorCode.CONFLICT
    message = "The task moved to another list while this move waited; try again"


class InvalidTimeZoneError(ValidationFailedError):
    location = ("query", "tz")
    message = UNKNOWN_ZONE[:1].upper() + UNKNOWN_ZONE[1:]
