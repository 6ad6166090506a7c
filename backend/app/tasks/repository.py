"""TaskRepository: every statement is scoped to the one owner given at construction.

There is no method that takes another owner's id or a raw statement, so a route cannot reach
someone else's rows by forgetting a check. Writes are single statements (UPDATE ... RETURNING),
so concurrent writers never lose an update. The repository flushes; the request commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, case, delete, func, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.tasks.errors import TaskNotFoundError
from app.tasks.models import Task
from app.tasks.pagination import Cursor

# UPDATE ... RETURNING hands back fresh rows; refresh any copy already in the session.
_RETURNING_OPTIONS = {"synchronize_session": False, "populate_existing": True}


class TaskRepository:
    def __init__(self, session: AsyncSession, owner_id: uuid.UUID) -> None:
        self._session = session
        self._owner_id = owner_id

    @property
    def owner_id(self) -> uuid.UUID:
        return self._owner_id

    def _owned(self, task_id: uuid.UUID) -> ColumnElement[bool]:
        return (Task.id == task_id) & (Task.user_id == self._owner_id)

    async def create(self, *, title: str, description: str | None = None) -> Task:
        statement = (
            insert(Task)
            .values(user_id=self._owner_id, title=title, description=description)
            .returning(Task)
        )
        return (await self._session.scalars(statement)).one()

    async def get(self, task_id: uuid.UUID) -> Task:
        task = await self._session.scalar(select(Task).where(self._owned(task_id)))
        if task is None:
            raise TaskNotFoundError()
        return task

    async def list(
        self, *, limit: int, completed: bool | None = None, after: Cursor | None = None
    ) -> Sequence[Task]:
        """Newest first (created_at, then id, descending); ``after`` continues a listing."""
        statement = select(Task).where(Task.user_id == self._owner_id)
        if completed is not None:
            statement = statement.where(Task.completed == completed)
        if after is not None:
            statement = statement.where(
                tuple_(Task.created_at, Task.id) < tuple_(after.created_at, after.id)
            )
        statement = statement.order_by(Task.created_at.desc(), Task.id.desc()).limit(limit)
        return (await self._session.scalars(statement)).all()

    async def update(self, task_id: uuid.UUID, **changes: Any) -> Task:
        """Apply any of ``title``, ``description``, ``completed`` in one statement."""
        unknown = set(changes) - {"title", "description", "completed"}
        if unknown:
            raise TypeError(f"not updatable: {', '.join(sorted(unknown))}")
        if not changes:
            return await self.get(task_id)
        values: dict[str, Any] = dict(changes)
        if "completed" in changes:
            # Keep the first completion time when completing twice; clear it on reopening.
            values["completed_at"] = (
                func.coalesce(Task.completed_at, func.now()) if changes["completed"] else None
            )
        return await self._update_returning(task_id, values)

    async def set_completed(self, task_id: uuid.UUID, completed: bool) -> Task:
        return await self.update(task_id, completed=completed)

    async def toggle(self, task_id: uuid.UUID) -> Task:
        # Both SET expressions read the row's old values: atomic under concurrent toggles.
        return await self._update_returning(
            task_id,
            {
                "completed": ~Task.completed,
                "completed_at": case((Task.completed, None), else_=func.now()),
            },
        )

    async def delete(self, task_id: uuid.UUID) -> None:
        result = await self._session.execute(
            delete(Task).where(self._owned(task_id)).returning(Task.id)
        )
        if result.scalar_one_or_none() is None:
            raise TaskNotFoundError()

    async def _update_returning(self, task_id: uuid.UUID, values: dict[str, Any]) -> Task:
        statement = (
            update(Task)
            .where(self._owned(task_id))
            .values(values)
            .returning(Task)
            .execution_options(**_RETURNING_OPTIONS)
        )
        task = (await self._session.scalars(statement)).one_or_none()
        if task is None:
            raise TaskNotFoundError()
        return task
