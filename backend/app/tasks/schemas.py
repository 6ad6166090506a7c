from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Annotated, Any, get_args

import asyncpg
from pydantic import BaseModel, Field, RootModel, StringConstraints, model_validator

from app.http.resources import json_bytes, stored_row
from app.http.schemas import MULTI_LINE, NOT_NULLABLE, SINGLE_LINE, RequestBody
from app.tasks.due import DueIn, DueOut
from app.tasks.models import DESCRIPTION_MAX_LENGTH, PRIORITY_MAX, TITLE_MAX_LENGTH

# Constraints go straight on `str`, before any validator: pydantic applies Annotated metadata in
# order, and after a validator it counts the length before stripping and strips after checking,
# which let "   " through as "" and refused 255 characters wrapped in spaces. The text rules come
# last, so they wrap the constrained string and see the value before it is stripped.
Title = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=TITLE_MAX_LENGTH),
    SINGLE_LINE,
]
Description = Annotated[str, StringConstraints(max_length=DESCRIPTION_MAX_LENGTH), MULTI_LINE]
Priority = Annotated[int, Field(ge=0, le=PRIORITY_MAX, description="0 (none) to 3 (high)")]


class TaskCreate(RequestBody):
    # Chosen by a client that must refer to the task before it syncs (an offline client).
    # Not strict: JSON has no UUID type, and the body is validated from Python objects.
    id: Annotated[uuid.UUID | None, Field(strict=False), NOT_NULLABLE] = Field(
        default=None, description="Optional: the new task's id, chosen by the client"
    )
    title: Title
    description: Description | None = None
    list_id: Annotated[uuid.UUID | None, Field(strict=False), NOT_NULLABLE] = Field(
        default=None, description="Optional: the list to add the task to (default: the Inbox)"
    )
    priority: Priority = 0
    due: DueIn | None = None


class TaskUpdate(RequestBody):
    """PUT: replaces the title; ``description`` omitted keeps it, ``null`` clears it."""

    title: Title
    description: Description | None = None


class TaskPatch(RequestBody):
    """PATCH: only the fields present change. Setting ``completed`` is idempotent. A task
    changes lists and places through POST .../move: ``list_id`` and ``position`` here are
    ignored, as every field this route does not take is."""

    # Absent means "unchanged"; null is refused (and not offered in the schema) for the two
    # columns that cannot be null.
    title: Annotated[Title | None, NOT_NULLABLE] = None
    description: Description | None = None
    completed: Annotated[bool | None, NOT_NULLABLE] = None
    priority: Annotated[Priority | None, NOT_NULLABLE] = None
    due: DueIn | None = Field(default=None, description="null clears it")


class TaskRead(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    title: str
    description: str | None
    completed: bool
    completed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    version: int = Field(
        ge=1, description="1 on create, +1 on every change; the ETag is this number, quoted"
    )
    list_id: uuid.UUID = Field(description="The list the task is in")
    position: str = Field(
        description="The task's place in its list: sort by this string, compared by code point"
    )
    priority: int = Field(ge=0, le=PRIORITY_MAX, description="0 (none) to 3 (high)")
    due: DueOut | None = Field(description="A day, or a time in a zone with its instant")


class TaskMove(RequestBody):
    """Where to put the task: in ``list_id`` (default: its own list), directly before
    ``before_id`` or after ``after_id`` (tasks of that list), or, with neither, at the end."""

    list_id: Annotated[uuid.UUID | None, Field(strict=False), NOT_NULLABLE] = None
    before_id: Annotated[uuid.UUID | None, Field(strict=False), NOT_NULLABLE] = None
    after_id: Annotated[uuid.UUID | None, Field(strict=False), NOT_NULLABLE] = None

    @model_validator(mode="after")
    def _one_anchor(self) -> TaskMove:
        if self.before_id is not None and self.after_id is not None:
            raise ValueError("give before_id or after_id, not both")
        return self


class TrashedTask(TaskRead):
    deleted_at: datetime = Field(description="When the task went to the trash")
    # pydantic allows a subclass to narrow a field; mypy sees a change of type.
    position: None = Field(  # type: ignore[assignment]
        description="A trashed task has no place; restored, it goes last"
    )


class TrashList(RootModel[list[TrashedTask]]):
    """A page of the trash, most recently deleted first (the next page is in the Link header)."""


class TaskList(RootModel[list[TaskRead]]):
    """A page of tasks, newest first (a JSON array; the next page is in the Link header)."""


def task_json(row: asyncpg.Record | Mapping[str, Any]) -> bytes:
    return json_bytes(dict(row))


_FIELDS = tuple(TaskRead.model_fields)
_TIME_FIELDS = tuple(
    name
    for name, field in TaskRead.model_fields.items()
    if datetime in get_args(field.annotation) or field.annotation is datetime
)


def stored_task(text: str) -> dict[str, Any]:
    """A task as an idempotency key stored it, as the driver returns it (http/resources.py
    stored_row); a key stored before priority existed answers its default then, 0."""
    task = stored_row(text, _FIELDS, _TIME_FIELDS)
    if task["priority"] is None:
        task["priority"] = 0
    return task


def task_fields_json(row: asyncpg.Record | Mapping[str, Any]) -> bytes:
    """A task's TaskRead fields only, from a row that carries more columns (the feed's)."""
    return json_bytes({name: row[name] for name in _FIELDS})


def tasks_json(rows: Iterable[asyncpg.Record], *, without: str | None = None) -> bytes:
    """``without``: a column the rows carry beyond the task's (a sort key for the cursor)."""
    tasks = [dict(row) for row in rows]
    if without is not None:
        for task in tasks:
            task.pop(without, None)
    return json_bytes(tasks)
