"""TaskRepository: every statement is scoped to the one owner given at construction.

Every statement in `statements.py` filters on ``owner_id`` and `_one`/`_all` bind it to the
repository's owner, always: no method takes another owner's id or a statement from outside, so
a route cannot reach someone else's rows by forgetting a check.

Each method is one statement, so one transaction, committed before it returns; writes are single
statements (UPDATE ... RETURNING), so concurrent writers never lose an update.

When a statement finds nothing, the repository asks whether the owner still exists before
answering "not found": a deleted user's token gets 401, as it would have from a check at the
door, while a statement that found a row has proved the owner exists (tasks reference their
owner ON DELETE CASCADE) and costs no second round trip.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from app.auth.repository import UserRepository, user_gone
from app.db.database import Database, Row
from app.db.statements import Statement
from app.tasks.errors import TaskNotFoundError
from app.tasks.pagination import Cursor
from app.tasks.statements import (
    CREATE_TASK,
    DELETE_TASK,
    GET_TASK,
    LIST_TASKS,
    TOGGLE_TASK,
    UPDATABLE,
    UPDATE_TASK,
)

Rows = list[Row]  # (inside the class, `list` is the method of that name)


class TaskRepository:
    def __init__(self, database: Database, owner_id: uuid.UUID) -> None:
        self._database = database
        self._owner_id = owner_id

    @property
    def owner_id(self) -> uuid.UUID:
        return self._owner_id

    async def create(self, *, title: str, description: str | None = None) -> Row:
        try:
            row = await self._one(CREATE_TASK, title=title, description=description)
        except asyncpg.ForeignKeyViolationError:
            # The only foreign key is the owner: the account was deleted since the token.
            raise user_gone(self._owner_id) from None
        assert row is not None  # INSERT ... RETURNING without a conflict clause: one row
        return row

    async def get(self, task_id: uuid.UUID) -> Row:
        return await self._found(await self._one(GET_TASK, task_id=task_id))

    async def list(
        self, *, limit: int, completed: bool | None = None, after: Cursor | None = None
    ) -> Rows:
        """Newest first (created_at, then id, descending); ``after`` continues a listing."""
        filters: dict[str, Any] = {"limit": limit}
        if completed is not None:
            filters["completed"] = completed
        if after is not None:
            filters["after_created_at"] = after.created_at
            filters["after_id"] = after.id
        statement = LIST_TASKS[completed is not None, after is not None]
        rows = await self._all(statement, **filters)
        if not rows:
            # An empty list is an answer only for an account that exists.
            await UserRepository(self._database).ensure_exists(self._owner_id)
        return rows

    async def update(self, task_id: uuid.UUID, **changes: Any) -> Row:
        """Apply any of ``title``, ``description``, ``completed`` in one statement."""
        unknown = set(changes) - set(UPDATABLE)
        if unknown:
            raise TypeError(f"not updatable: {', '.join(sorted(unknown))}")
        if not changes:
            return await self.get(task_id)
        statement = UPDATE_TASK[frozenset(changes)]
        return await self._found(await self._one(statement, task_id=task_id, **changes))

    async def set_completed(self, task_id: uuid.UUID, completed: bool) -> Row:
        return await self.update(task_id, completed=completed)

    async def toggle(self, task_id: uuid.UUID) -> Row:
        return await self._found(await self._one(TOGGLE_TASK, task_id=task_id))

    async def delete(self, task_id: uuid.UUID) -> None:
        await self._found(await self._one(DELETE_TASK, task_id=task_id))

    async def _one(self, statement: Statement, **values: Any) -> Row | None:
        """Run one statement for this owner; its first row, if any."""
        return await self._database.fetch_one(statement, owner_id=self._owner_id, **values)

    async def _all(self, statement: Statement, **values: Any) -> Rows:
        """Run one statement for this owner; all its rows."""
        return await self._database.fetch_all(statement, owner_id=self._owner_id, **values)

    async def _found(self, row: Row | None) -> Row:
        if row is None:
            # Missing and not-yours are one answer; a deleted owner's is 401 (see the top).
            await UserRepository(self._database).ensure_exists(self._owner_id)
            raise TaskNotFoundError()
        return row
