from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Annotated, Any

import asyncpg
from pydantic import BaseModel, Field, RootModel, StringConstraints, model_validator

from app.http.errors import ErrorBody
from app.http.resources import json_bytes, stored_row
from app.http.schemas import NOT_NULLABLE, SINGLE_LINE, RequestBody
from app.lists.models import NAME_MAX_LENGTH

# As a task's title (tasks/schemas.py): constraints first, then the text rules.
ListName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=NAME_MAX_LENGTH),
    SINGLE_LINE,
]
# Not strict: JSON has no UUID type.
OptionalId = Annotated[uuid.UUID | None, Field(strict=False), NOT_NULLABLE]


class ListCreate(RequestBody):
    id: OptionalId = Field(default=None, description="Optional: the new list's id")
    name: ListName


class ListPatch(RequestBody):
    name: Annotated[ListName | None, NOT_NULLABLE] = None


class ListMove(RequestBody):
    """Where to put the list: directly before ``before_id``, after ``after_id``, or (neither)
    last."""

    before_id: OptionalId = None
    after_id: OptionalId = None

    @model_validator(mode="after")
    def _one_anchor(self) -> ListMove:
        if self.before_id is not None and self.after_id is not None:
            raise ValueError("give before_id or after_id, not both")
        return self


class ListRead(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    position: str = Field(description="Lists sort by this string, compared by code point")
    is_default: bool = Field(description="The list tasks go to when created without one")
    version: int = Field(ge=1, description="1 on create, +1 on every change; the ETag")
    created_at: datetime
    updated_at: datetime
    open_tasks: int = Field(ge=0, description="Live tasks not completed")
    completed_tasks: int = Field(ge=0, description="Live tasks completed")


class ListCollection(RootModel[list[ListRead]]):
    """Every live list of the user, in position order."""


class ListVersionConflict(ErrorBody):
    """412 version_conflict: the list as it is now."""

    current: ListRead


_FIELDS = tuple(ListRead.model_fields)
_TIME_FIELDS = ("created_at", "updated_at")


def list_json(row: asyncpg.Record | Mapping[str, Any]) -> bytes:
    """A list's ListRead fields, from a row that may carry more (the feed's, the export's)."""
    return json_bytes({name: row[name] for name in _FIELDS})


def lists_json(rows: Iterable[asyncpg.Record]) -> bytes:
    return json_bytes([dict(row) for row in rows])


def stored_list(text: str) -> dict[str, Any]:
    """A list as an idempotency key stored it, as the driver returns it."""
    return stored_row(text, _FIELDS, _TIME_FIELDS)
