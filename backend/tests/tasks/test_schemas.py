"""The task JSON the API sends is TaskRead's, byte for byte, though it skips TaskRead."""

from __future__ import annotations

import uuid

from pydantic import TypeAdapter

from app.db.database import Database
from app.tasks.models import Task
from app.tasks.repository import TaskRepository
from app.tasks.schemas import TaskRead, task_json, tasks_json
from app.tasks.statements import TASK_COLUMNS
from tests.fixtures.accounts import Account


def test_the_repository_selects_exactly_taskreads_fields_in_its_order() -> None:
    columns = [column.name for column in TASK_COLUMNS]

    assert columns == list(TaskRead.model_fields)
    # Every column but the trash's and the feed's bookkeeping and the search's, which the API
    # never sends; the due's four columns are sent as one object.
    internal = {"deleted_at", "change_seq", "search"}
    due = {"due_date", "due_datetime", "due_timezone", "due_at"}
    stored = {column.name for column in Task.__table__.columns} - internal
    assert set(columns) == stored - due | {"due"}


async def test_rows_serialise_to_the_bytes_taskread_would_produce(
    database: Database, account: Account, clean_tasks: None
) -> None:
    tasks = TaskRepository(database, uuid.UUID(account.id))
    plain = await tasks.create(title="plain")
    described = await tasks.create(title='é \u2028 "quoted" </script> \U0001f600', description="d")
    done = await tasks.toggle(described["id"])
    rows = await tasks.list(limit=10)
    assert done["completed_at"] is not None
    assert {row["id"] for row in rows} == {plain["id"], described["id"]}

    as_taskread = TypeAdapter(list[TaskRead]).dump_json(
        [TaskRead.model_validate(dict(row)) for row in rows]
    )
    assert tasks_json(rows) == as_taskread
    assert task_json(done) == TaskRead.model_validate(dict(done)).model_dump_json().encode()
