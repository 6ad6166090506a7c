"""What /changes answers: pydantic models for the schema, bytes built straight from the rows."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Annotated, Literal

import orjson
from pydantic import BaseModel, Field

from app.changes.feed import Change, ListChange
from app.lists.schemas import ListRead, list_json
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


class ListUpserted(BaseModel):
    """Only with include=lists. The counts are as of the read; task changes move them."""

    op: Literal["list_upsert"]
    list: ListRead


class ListDeleted(BaseModel):
    """Only with include=lists: the list is gone, and its tasks went to the trash with it."""

    op: Literal["list_delete"]
    list_id: uuid.UUID


ChangeItem = Annotated[
    TaskUpserted | TaskDeleted | ListUpserted | ListDeleted, Field(discriminator="op")
]


class ChangesPage(BaseModel):
    changes: list[ChangeItem] = Field(
        description="Oldest change first; each task (and list) at most once"
    )
    cursor: str = Field(
        pattern=CURSOR_PATTERN, description="Send as since= to continue after these changes"
    )
    has_more: bool = Field(description="More changes follow: ask again at once with the cursor")


def change_json(row: Change) -> bytes:
    if isinstance(row, ListChange):
        if row["deleted_at"] is not None:
            return b'{"op":"list_delete","list_id":"' + str(row["id"]).encode() + b'"}'
        return b'{"op":"list_upsert","list":' + list_json(row.row) + b"}"
    if row["deleted_at"] is not None:
        return b'{"op":"delete","task_id":"' + str(row["id"]).encode() + b'"}'
    return b'{"op":"upsert","task":' + task_fields_json(row) + b"}"


def changes_json(rows: Iterable[Change], cursor: str, has_more: bool) -> bytes:
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
