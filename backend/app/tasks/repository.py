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
from typing import Any, overload

import asyncpg

from app.auth.repository import user_gone
from app.changes.repository import ChangeRepository, Written
from app.db.database import Row, Transaction
from app.http.conditional import Precondition
from app.idempotency.keys import IdempotentRequest
from app.idempotency.replay import StoredResponse
from app.idempotency.statements import WriteStatements
from app.lists.errors import ListNotFoundError
from app.lists.statements import LOCK_LISTS_FOR_MOVES
from app.positions.errors import AnchorIsItselfError
from app.positions.placement import place
from app.tasks.due import DueIn, due_columns
from app.tasks.errors import (
    TaskExistsError,
    TaskMovedMeanwhileError,
    TaskNotFoundError,
    TaskVersionConflictError,
)
from app.tasks.listing import NEWEST_FIRST, Listing
from app.tasks.listing import statement as listing_statement
from app.tasks.pagination import Cursor
from app.tasks.statements import (
    CREATE_TASK,
    CREATE_TASK_IN_LIST,
    EMPTY_TRASH,
    GET_TASK,
    GET_TRASHED,
    LIST_TRASH,
    LIVE_LIST,
    MOVE_TASK,
    PURGE_TASK,
    RESTORE_TASK,
    TASK_LIST,
    TASK_PLACEMENT,
    TASK_TO_MOVE,
    TOGGLE_TASK,
    TRASH_TASK,
    update_task,
)

Rows = list[Row]  # (inside the class, `list` is the method of that name)
Task = Written
TASK_PRIMARY_KEY = "pk_tasks"
# A move whose task changed lists between its read and its lock starts again this many times.
_MOVE_ATTEMPTS = 3


class _MovedMeanwhile(Exception):  # noqa: N818 (a signal to retry, never raised to a caller)
    pass


class TaskRepository(ChangeRepository):
    @overload
    async def create(
        self,
        *,
        title: str,
        description: str | None = ...,
        task_id: uuid.UUID | None = ...,
        list_id: uuid.UUID | None = ...,
        priority: int = ...,
        due: DueIn | None = ...,
    ) -> Task: ...
    @overload
    async def create(
        self,
        *,
        title: str,
        description: str | None = ...,
        task_id: uuid.UUID | None = ...,
        list_id: uuid.UUID | None = ...,
        priority: int = ...,
        due: DueIn | None = ...,
        idempotency: IdempotentRequest | None,
    ) -> Task | StoredResponse: ...
    async def create(
        self,
        *,
        title: str,
        description: str | None = None,
        task_id: uuid.UUID | None = None,
        list_id: uuid.UUID | None = None,
        priority: int = 0,
        due: DueIn | None = None,
        idempotency: IdempotentRequest | None = None,
    ) -> Task | StoredResponse:
        """``task_id``: the client's choice of id (409 task_exists when it is taken);
        ``list_id``: a live list of the owner (404 list_not_found), else the default list."""
        values: dict[str, Any] = {
            "task_id": task_id,
            "title": title,
            "description": description,
            "priority": priority,
            **due_columns(due),
        }
        if list_id is not None:
            values["list_id"] = list_id
        try:
            written = await self._write(
                CREATE_TASK if list_id is None else CREATE_TASK_IN_LIST,
                None,
                idempotency,
                **values,
            )
        except asyncpg.ForeignKeyViolationError:
            # The owner's change lock or default list is gone: the account was deleted since
            # the token.
            raise user_gone(self._owner_id) from None
        except asyncpg.UniqueViolationError as error:
            if error.constraint_name == TASK_PRIMARY_KEY:
                # Ids are unique across users; whose task holds it is not told.
                raise TaskExistsError() from None
            raise
        if written is None:
            # Into a list: not a live list of the owner (or the owner is gone: 401).
            await self._ensure_owner_exists()
            raise ListNotFoundError()
        return written

    async def get(self, task_id: uuid.UUID) -> Row:
        return await self._found(await self._one(GET_TASK, task_id=task_id))

    async def get_trashed(self, task_id: uuid.UUID) -> Row:
        return await self._found(await self._one(GET_TRASHED, task_id=task_id))

    async def list(
        self,
        listing: Listing | None = NEWEST_FIRST,
        *,
        limit: int,
        list_id: uuid.UUID | None = None,
    ) -> Rows:
        """A page of the owner's live tasks as ``listing`` filters and orders them, in the list
        ``list_id`` when given. None: a search with no word to look for, which finds nothing."""
        rows = (
            []
            if listing is None
            else await self._all(listing_statement(listing.shape), limit=limit, **listing.values)
        )
        if not rows:
            # An empty list is an answer only for an account that exists, and, filtered by a
            # list, only for a live list of the owner's (404 otherwise, as everywhere else).
            await self._ensure_owner_exists()
            if list_id is not None and await self._one(LIVE_LIST, list_id=list_id) is None:
                raise ListNotFoundError()
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
        """Apply any of ``title``, ``description``, ``completed``, ``priority`` and ``due`` (a
        DueIn, or None to clear it) in one statement."""
        # No changes (an empty PATCH) reads the task, under the same precondition and key.
        statements = update_task(frozenset(changes))
        values = dict(changes)
        if "due" in values:
            values.update(due_columns(values.pop("due")))
        return await self._write_found(statements, task_id, precondition, idempotency, **values)

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
            await self._ensure_owner_exists()
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
            await self._ensure_owner_exists()
        return None

    async def move(
        self,
        task_id: uuid.UUID,
        *,
        list_id: uuid.UUID | None = None,
        before_id: uuid.UUID | None = None,
        after_id: uuid.UUID | None = None,
        precondition: Precondition | None = None,
        idempotency: IdempotentRequest | None = None,
    ) -> Task | StoredResponse:
        """Put the task into ``list_id`` (default: its own), directly before ``before_id`` or
        after ``after_id``, or last. One transaction that locks, in this order: the task's list
        and the target list, in id order (the moves into and out of a list wait for each other,
        and its deletion for them); the task; the neighbours a respace rewrites; and last, with
        the first write, the owner's change lock, as every write does."""
        if task_id in (before_id, after_id):
            raise AnchorIsItselfError()

        async def work(tx: Transaction) -> Task:
            source = await tx.fetch_value(TASK_LIST, owner_id=self._owner_id, task_id=task_id)
            if source is None:
                raise await self._missing()
            target = source if list_id is None else list_id
            locked = await tx.fetch_all(
                LOCK_LISTS_FOR_MOVES, owner_id=self._owner_id, ids=sorted({source, target})
            )
            if target not in {row["id"] for row in locked}:
                if list_id is None:
                    raise await self._missing()  # its list was deleted, and it with it
                await self._ensure_owner_exists()
                raise ListNotFoundError()
            task = await tx.fetch_one(TASK_TO_MOVE, owner_id=self._owner_id, task_id=task_id)
            if task is None:
                raise await self._missing()
            if task["list_id"] != source:
                raise _MovedMeanwhile()
            if precondition is not None and not precondition.matches(task["version"]):
                current = await tx.fetch_one(GET_TASK, owner_id=self._owner_id, task_id=task_id)
                assert current is not None  # locked above
                raise TaskVersionConflictError.about(current)
            position = await place(
                tx,
                TASK_PLACEMENT,
                owner_id=self._owner_id,
                scope=target,
                item_id=task_id,
                before_id=before_id,
                after_id=after_id,
            )
            moved = await self._last(
                tx, MOVE_TASK, idempotency, task_id=task_id, list_id=target, position=position
            )
            assert moved is not None  # the task is locked, live and the owner's
            return moved

        for _ in range(_MOVE_ATTEMPTS):
            try:
                return await self._write_in_transaction(idempotency, work)
            except _MovedMeanwhile:
                continue  # its lists are read and locked again
        raise TaskMovedMeanwhileError()

    async def _missing(self) -> TaskNotFoundError:
        await self._ensure_owner_exists()
        return TaskNotFoundError()

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

    async def _found(self, row: Row | None) -> Row:
        if row is None:
            # Missing and not-yours are one answer; a deleted owner's is 401 (see the top).
            raise await self._missing()
        return row
