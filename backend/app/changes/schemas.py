"""What /changes answers: pydantic models for the schema, bytes built straight from the rows."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Annotated, Literal

import orjson
from pydantic import BaseModel, Field

from app.db.database import Row
from app.tasks.schemas import TaskRead, task_fields_json

# A cursor is opaque to clients, who only send it back: a change number, and while a full sync
# is paged, the highest number when it began (changes/feed.py).
CURSOR_PATTERN = r"^[0-9]{1,18}(\.[0-9]{1,18})?$"


class TaskUpserted(BaseModel):
    op: Literal["upsert"]
    task: TaskRead


class TaskDeleted(BaseModel):
    """Trashed or deleted for good: either way, gone from the client's list."""

    op: Literal["delete"]
    task_id: uuid.UUID


Change = Annotated[TaskUpserted | TaskDeleted, Field(discriminator="op")]


class ChangesPage(BaseModel):
    changes: list[Change] = Field(description="Oldest change first; each task at most once")
    cursor: str = Field(
        pattern=CURSOR_PATTERN, description="Send as since= to continue after these changes"
    )
    has_more: bool = Field(description="More changes follow: ask again at once with the cursor")


def change_json(row: Row) -> bytes:
    if row["deleted_at"] is not None:
        return b'{"op":"delete","task_id":"' + str(row["id"]).encode() + b'"}'
    return b'{"op":"upsert","task":' + task_fields_json(row) + b"}"


def changes_json(rows: Iterable[Row], cursor: str, has_more: bool) -> bytes:
    changes = b",".join(change_json(row) for row in rows)
    return (
        b'{"changes":['
        + changes
        + b'],"cursor":'
        + orjson.dumps(cursor)
        + b',"has_more":'
        + (b"true" if has_more else b"false")
        + b"}"
    )
