"""TaskRepository: every statement is scoped to the one owner given at construction.

Every statement below is written against ``$1`` as the owner, and `_fetch`/`_fetchrow` bind
``$1`` to the repository's owner, always: there is no method that takes another owner's id or
a statement from outside, so a route cannot reach someone else's rows by forgetting a check.

The statements are hand-written SQL run on the pooled asyncpg connection (see
`Database.driver_connection`): this is the hot path, where SQLAlchemy's execution layer and
ORM objects cost several times the database round trip (bench/RESULTS.md). Each method is one
statement, so each method is one transaction, committed before it returns; writes are single
statements (UPDATE ... RETURNING), so concurrent writers never lose an update.

When a statement finds nothing, the repository asks whether the owner still exists before
answering "not found" (`ensure_account_exists`): a deleted user's token gets 401, as it would
have from a check at the door, but a statement that found a row has proved the owner exists
and costs no second round trip.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from app.auth.repository import account_gone, ensure_account_exists
from app.core.db import Database
from app.tasks.errors import TaskNotFoundError
from app.tasks.pagination import Cursor

# The columns of a task as the API returns it, in TaskRead's order (a test holds them equal).
TASK_COLUMNS = "id, user_id, title, description, completed, completed_at, created_at, updated_at"
UPDATABLE = ("title", "description", "completed")

_GET = f"SELECT {TASK_COLUMNS} FROM tasks WHERE user_id = $1 AND id = $2"
_CREATE = (
    f"INSERT INTO tasks (user_id, title, description) VALUES ($1, $2, $3) RETURNING {TASK_COLUMNS}"
)
# Both SET expressions read the row's old values: atomic under concurrent toggles.
_TOGGLE = (
    "UPDATE tasks SET completed = NOT completed, "
    "completed_at = CASE WHEN completed THEN NULL ELSE now() END "
    f"WHERE user_id = $1 AND id = $2 RETURNING {TASK_COLUMNS}"
)
_DELETE = "DELETE FROM tasks WHERE user_id = $1 AND id = $2 RETURNING id"
# Setting completed keeps the first completion time when completing twice and clears it on
# reopening; {completed} is the parameter that holds the new value.
_COMPLETED_AT = "completed_at = CASE WHEN {completed} THEN coalesce(completed_at, now()) END"

TaskRow = asyncpg.Record
TaskRows = list[TaskRow]  # (inside the class, `list` is the method of that name)


class TaskRepository:
    def __init__(self, database: Database, owner_id: uuid.UUID) -> None:
        self._database = database
        self._owner_id = owner_id

    @property
    def owner_id(self) -> uuid.UUID:
        return self._owner_id

    async def create(self, *, title: str, description: str | None = None) -> TaskRow:
        try:
            row = await self._fetchrow(_CREATE, title, description)
        except asyncpg.ForeignKeyViolationError:
            # The only foreign key is the owner: the account was deleted since the token.
            raise account_gone() from None
        assert row is not None  # INSERT ... RETURNING without a conflict clause: one row
        return row

    async def get(self, task_id: uuid.UUID) -> TaskRow:
        return await self._found(await self._fetchrow(_GET, task_id))

    async def list(
        self, *, limit: int, completed: bool | None = None, after: Cursor | None = None
    ) -> TaskRows:
        """Newest first (created_at, then id, descending); ``after`` continues a listing."""
        conditions = ["user_id = $1"]
        arguments: list[Any] = []
        if completed is not None:
            arguments.append(completed)
            conditions.append(f"completed = ${len(arguments) + 1}")
        if after is not None:
            arguments += [after.created_at, after.id]
            conditions.append(f"(created_at, id) < (${len(arguments)}, ${len(arguments) + 1})")
        arguments.append(limit)
        statement = (
            f"SELECT {TASK_COLUMNS} FROM tasks WHERE {' AND '.join(conditions)} "
            f"ORDER BY created_at DESC, id DESC LIMIT ${len(arguments) + 1}"
        )
        rows = await self._fetch(statement, *arguments)
        if not rows:
            # An empty list is an answer only for an account that exists.
            await ensure_account_exists(self._database, self._owner_id)
        return rows

    async def update(self, task_id: uuid.UUID, **changes: Any) -> TaskRow:
        """Apply any of ``title``, ``description``, ``completed`` in one statement."""
        unknown = set(changes) - set(UPDATABLE)
        if unknown:
            raise TypeError(f"not updatable: {', '.join(sorted(unknown))}")
        if not changes:
            return await self.get(task_id)
        arguments: list[Any] = [task_id]
        assignments = []
        # Column names come from UPDATABLE, never from the caller; values are parameters.
        for column in UPDATABLE:
            if column in changes:
                arguments.append(changes[column])
                placeholder = f"${len(arguments) + 1}"
                assignments.append(f"{column} = {placeholder}")
                if column == "completed":
                    assignments.append(_COMPLETED_AT.format(completed=placeholder))
        statement = (
            f"UPDATE tasks SET {', '.join(assignments)} "
            f"WHERE user_id = $1 AND id = $2 RETURNING {TASK_COLUMNS}"
        )
        return await self._found(await self._fetchrow(statement, *arguments))

    async def set_completed(self, task_id: uuid.UUID, completed: bool) -> TaskRow:
        return await self.update(task_id, completed=completed)

    async def toggle(self, task_id: uuid.UUID) -> TaskRow:
        return await self._found(await self._fetchrow(_TOGGLE, task_id))

    async def delete(self, task_id: uuid.UUID) -> None:
        await self._found(await self._fetchrow(_DELETE, task_id))

    async def _fetch(self, statement: str, *arguments: Any) -> TaskRows:
        """Run one statement with ``$1`` bound to the owner; all its rows."""
        async with self._database.driver_connection() as connection:
            return await connection.fetch(statement, self._owner_id, *arguments)

    async def _fetchrow(self, statement: str, *arguments: Any) -> TaskRow | None:
        """Run one statement with ``$1`` bound to the owner; its first row, if any."""
        async with self._database.driver_connection() as connection:
            return await connection.fetchrow(statement, self._owner_id, *arguments)

    async def _found(self, row: TaskRow | None) -> TaskRow:
        if row is None:
            # Missing and not-yours are one answer; a deleted owner's is 401 (see the top).
            await ensure_account_exists(self._database, self._owner_id)
            raise TaskNotFoundError()
        return row
