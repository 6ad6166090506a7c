"""TaskRepository: every statement is scoped to the one owner given at construction.

Every statement in `statements.py` filters on ``owner_id`` and `_one`/`_all` bind it to the
repository's owner, always: no method takes another owner's id or a statement from outside, so
a route cannot reach someone else's rows by forgetting a check.

Each method is one statement, so one transaction, committed before it returns; writes are single
statements (UPDATE ... RETURNING), so concurrent writers never lose an update. A write sent with
an Idempotency-Key stores the key in that same statement (idempotency/statements.py), and a
write with an If-Match carries its version condition in its WHERE clause.

When a statement finds nothing, the repository asks whether the owner still exists before
answering "not found": a deleted user's token gets 401, as it would have from a check at the
door, while a statement that found a row has proved the owner exists (tasks reference their
owner ON DELETE CASCADE) and costs no second round trip.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, overload

import asyncpg

from app.auth.repository import UserRepository, user_gone
from app.changes.models import TASK_CHANGES_CHANNEL
from app.db.database import Database, Row
from app.db.errors import DatabaseUnavailableError
from app.db.statements import Statement
from app.http.conditional import Precondition
from app.idempotency.keys import IdempotentRequest
from app.idempotency.replay import StoredResponse, run_keyed
from app.tasks.errors import TaskExistsError, TaskNotFoundError, TaskVersionConflictError
from app.tasks.pagination import Cursor
from app.tasks.statements import (
    CREATE_TASK,
    EMPTY_TRASH,
    GET_TASK,
    GET_TRASHED,
    LIST_TASKS,
    LIST_TRASH,
    PURGE_TASK,
    RESTORE_TASK,
    TOGGLE_TASK,
    TRASH_TASK,
    UPDATABLE,
    UPDATE_TASK,
    WriteStatements,
)

Rows = list[Row]  # (inside the class, `list` is the method of that name)
# A written task: the driver's row, or the written columns of a keyed write's outcome.
Task = Row | Mapping[str, Any]
TASK_PRIMARY_KEY = "pk_tasks"


class TaskRepository:
    def __init__(self, database: Database, owner_id: uuid.UUID) -> None:
        self._database = database
        self._owner_id = owner_id

    @property
    def owner_id(self) -> uuid.UUID:
        return self._owner_id

    @overload
    async def create(
        self, *, title: str, description: str | None = ..., task_id: uuid.UUID | None = ...
    ) -> Task: ...
    @overload
    async def create(
        self,
        *,
        title: str,
        description: str | None = ...,
        task_id: uuid.UUID | None = ...,
        idempotency: IdempotentRequest | None,
    ) -> Task | StoredResponse: ...
    async def create(
        self,
        *,
        title: str,
        description: str | None = None,
        task_id: uuid.UUID | None = None,
        idempotency: IdempotentRequest | None = None,
    ) -> Task | StoredResponse:
        """``task_id``: the client's choice of id (409 task_exists when it is taken)."""
        try:
            written = await self._write(
                CREATE_TASK,
                None,
                idempotency,
                task_id=task_id,
                title=title,
                description=description,
            )
        except asyncpg.ForeignKeyViolationError:
            # The only foreign key is the owner: the account was deleted since the token.
            raise user_gone(self._owner_id) from None
        except asyncpg.UniqueViolationError as error:
            if error.constraint_name == TASK_PRIMARY_KEY:
                # Ids are unique across users; whose task holds it is not told.
                raise TaskExistsError() from None
            raise
        assert written is not None  # INSERT ... SELECT without a failing condition: one row
        return written

    async def get(self, task_id: uuid.UUID) -> Row:
        return await self._found(await self._one(GET_TASK, task_id=task_id))

    async def get_trashed(self, task_id: uuid.UUID) -> Row:
        return await self._found(await self._one(GET_TRASHED, task_id=task_id))

    async def list(
        self, *, limit: int, completed: bool | None = None, after: Cursor | None = None
    ) -> Rows:
        """Newest first (created_at, then id, descending); ``after`` continues a listing."""
        filters: dict[str, Any] = {"limit": limit}
        if completed is not None:
            filters["completed"] = completed
        if after is not None:
            filters["after_created_at"] = after.at
            filters["after_id"] = after.id
        statement = LIST_TASKS[completed is not None, after is not None]
        rows = await self._all(statement, **filters)
        if not rows:
            # An empty list is an answer only for an account that exists.
            await UserRepository(self._database).ensure_exists(self._owner_id)
        return rows

    @overload
    async def update(
        self,
        task_id: uuid.UUID,
        *,
        precondition: Precondition | None = ...,
        idempotency: None = ...,
        **changes: Any,
    ) -> Task: ...
    @overload
    async def update(
        self,
        task_id: uuid.UUID,
        *,
        precondition: Precondition | None = ...,
        idempotency: IdempotentRequest | None,
        **changes: Any,
    ) -> Task | StoredResponse: ...
    async def update(
        self,
        task_id: uuid.UUID,
        *,
        precondition: Precondition | None = None,
        idempotency: IdempotentRequest | None = None,
        **changes: Any,
    ) -> Task | StoredResponse:
        """Apply any of ``title``, ``description``, ``completed`` in one statement."""
        unknown = set(changes) - set(UPDATABLE)
        if unknown:
            raise TypeError(f"not updatable: {', '.join(sorted(unknown))}")
        # No changes (an empty PATCH) reads the task, under the same precondition and key.
        statements = UPDATE_TASK[frozenset(changes)]
        return await self._write_found(statements, task_id, precondition, idempotency, **changes)

    async def set_completed(self, task_id: uuid.UUID, completed: bool) -> Task:
        return await self.update(task_id, completed=completed)

    @overload
    async def toggle(
        self, task_id: uuid.UUID, *, precondition: Precondition | None = ...
    ) -> Task: ...
    @overload
    async def toggle(
        self,
        task_id: uuid.UUID,
        *,
        precondition: Precondition | None = ...,
        idempotency: IdempotentRequest | None,
    ) -> Task | StoredResponse: ...
    async def toggle(
        self,
        task_id: uuid.UUID,
        *,
        precondition: Precondition | None = None,
        idempotency: IdempotentRequest | None = None,
    ) -> Task | StoredResponse:
        return await self._write_found(TOGGLE_TASK, task_id, precondition, idempotency)

    async def delete(
        self,
        task_id: uuid.UUID,
        *,
        precondition: Precondition | None = None,
        idempotency: IdempotentRequest | None = None,
    ) -> StoredResponse | None:
        """Move the task to the trash. None once done; a stored response when the key's first
        request already did."""
        written = await self._write_found(TRASH_TASK, task_id, precondition, idempotency)
        return written if isinstance(written, StoredResponse) else None

    async def list_trash(self, *, limit: int, after: Cursor | None = None) -> Rows:
        """Most recently deleted first; ``after`` continues a listing."""
        filters: dict[str, Any] = {"limit": limit}
        if after is not None:
            filters["after_deleted_at"] = after.at
            filters["after_id"] = after.id
        rows = await self._all(LIST_TRASH[after is not None], **filters)
        if not rows:
            await UserRepository(self._database).ensure_exists(self._owner_id)
        return rows

    @overload
    async def restore(
        self, task_id: uuid.UUID, *, precondition: Precondition | None = ...
    ) -> Task: ...
    @overload
    async def restore(
        self,
        task_id: uuid.UUID,
        *,
        precondition: Precondition | None = ...,
        idempotency: IdempotentRequest | None,
    ) -> Task | StoredResponse: ...
    async def restore(
        self,
        task_id: uuid.UUID,
        *,
        precondition: Precondition | None = None,
        idempotency: IdempotentRequest | None = None,
    ) -> Task | StoredResponse:
        """Take the task out of the trash (a change: a new version)."""
        return await self._write_found(
            RESTORE_TASK, task_id, precondition, idempotency, trashed=True
        )

    async def purge(
        self,
        task_id: uuid.UUID,
        *,
        precondition: Precondition | None = None,
        idempotency: IdempotentRequest | None = None,
    ) -> StoredResponse | None:
        """Delete a trashed task for good."""
        written = await self._write_found(
            PURGE_TASK, task_id, precondition, idempotency, trashed=True
        )
        return written if isinstance(written, StoredResponse) else None

    async def empty_trash(
        self, *, idempotency: IdempotentRequest | None = None
    ) -> StoredResponse | None:
        """Delete every trashed task for good."""
        written = await self._write(EMPTY_TRASH, None, idempotency)
        assert written is not None  # a count, whether or not the trash held anything
        if isinstance(written, StoredResponse):
            return written
        if written["purged"] == 0:
            # Nothing purged: an empty trash is an answer only for an account that exists.
            await UserRepository(self._database).ensure_exists(self._owner_id)
        return None

    async def _write(
        self,
        statements: WriteStatements,
        precondition: Precondition | None,
        idempotency: IdempotentRequest | None,
        **values: Any,
    ) -> Task | StoredResponse | None:
        conditional = precondition is not None and precondition.versions is not None
        if conditional:
            assert precondition is not None
            assert precondition.versions is not None
            values["versions"] = precondition.versions
        statement = statements.pick(conditional=conditional, keyed=idempotency is not None)
        written: Task | StoredResponse | None
        try:
            if idempotency is None:
                written = await self._one(statement, **values)
            else:
                written = await run_keyed(self._one, statement, idempotency, **values)
        except DatabaseUnavailableError:
            # The connection was lost after the statement was sent: it may have committed.
            self._announce_change()
            raise
        if written is not None:
            # A replay too: its write's own announcement may be what a lost connection cut off.
            self._announce_change()
        return written

    def _announce_change(self) -> None:
        """The owner's event streams, in every process, read their feed (a wake that finds
        nothing costs one read)."""
        self._database.notifications.send(TASK_CHANGES_CHANNEL, str(self._owner_id))

    async def _write_found(
        self,
        statements: WriteStatements,
        task_id: uuid.UUID,
        precondition: Precondition | None,
        idempotency: IdempotentRequest | None,
        *,
        trashed: bool = False,
        **values: Any,
    ) -> Task | StoredResponse:
        """A write of one task, live or (``trashed``) in the trash."""
        written = await self._write(
            statements, precondition, idempotency, task_id=task_id, **values
        )
        if written is None:
            # Missing or not the owner's (404 from the read), or not the version If-Match named.
            task = await (self.get_trashed(task_id) if trashed else self.get(task_id))
            if precondition is None or precondition.versions is None:
                raise TaskNotFoundError()  # it appeared (a client-chosen id) after the write
            # Stale, or the version named became current only after the write looked (one the
            # client could not have seen): a conflict either way, with the task as it is now.
            raise TaskVersionConflictError.about(task)
        return written

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
