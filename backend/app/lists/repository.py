"""ListRepository: the owner's lists, scoped like TaskRepository (changes/repository.py)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from app.auth.repository import user_gone
from app.changes.repository import ChangeRepository, Written
from app.db.database import Row, Transaction
from app.http.conditional import Precondition
from app.idempotency.keys import IdempotentRequest
from app.idempotency.replay import StoredResponse
from app.lists.errors import (
    DefaultListProtectedError,
    ListExistsError,
    ListNotFoundError,
    ListVersionConflictError,
)
from app.lists.statements import (
    ALL_LISTS,
    CREATE_LIST,
    DELETE_LIST,
    GET_LIST,
    LIST_PLACEMENT,
    LOCK_ALL_LISTS,
    LOCK_LIST_FOR_DELETE,
    LOCK_LIST_TASKS,
    MOVE_LIST,
    READ_LIST,
    RENAME_LIST,
    TRASH_LIST_TASKS,
)
from app.positions.errors import AnchorIsItselfError
from app.positions.placement import place

LIST_PRIMARY_KEY = "pk_lists"


class ListRepository(ChangeRepository):
    async def all(self) -> list[Row]:
        """Every live list, in position order (the default list is always among them)."""
        rows = await self._all(ALL_LISTS)
        if not rows:
            await self._ensure_owner_exists()
        return rows

    async def get(self, list_id: uuid.UUID) -> Row:
        row = await self._one(GET_LIST, list_id=list_id)
        if row is None:
            raise await self._missing()
        return row

    async def create(
        self,
        *,
        name: str,
        list_id: uuid.UUID | None = None,
        idempotency: IdempotentRequest | None = None,
    ) -> Written | StoredResponse:
        """Appended after the owner's other lists."""
        try:
            written = await self._write(CREATE_LIST, None, idempotency, list_id=list_id, name=name)
        except asyncpg.ForeignKeyViolationError:
            raise user_gone(self._owner_id) from None
        except asyncpg.UniqueViolationError as error:
            if error.constraint_name == LIST_PRIMARY_KEY:
                raise ListExistsError() from None
            raise
        assert written is not None  # INSERT ... SELECT without a failing condition: one row
        return written

    async def rename(
        self,
        list_id: uuid.UUID,
        *,
        name: str | None,
        precondition: Precondition | None = None,
        idempotency: IdempotentRequest | None = None,
    ) -> Written | StoredResponse:
        """``name`` None (an empty PATCH) reads the list under the same conditions."""
        statements, values = (READ_LIST, {}) if name is None else (RENAME_LIST, {"name": name})
        written = await self._write(
            statements, precondition, idempotency, list_id=list_id, **values
        )
        if written is None:
            current = await self.get(list_id)  # 404 when it is missing
            if precondition is None or precondition.versions is None:
                raise ListNotFoundError()  # it appeared (a client-chosen id) after the write
            raise ListVersionConflictError.about(current)
        return written

    async def delete(
        self,
        list_id: uuid.UUID,
        *,
        precondition: Precondition | None = None,
        idempotency: IdempotentRequest | None = None,
    ) -> StoredResponse | None:
        """Move the list's tasks to the trash, then mark the list deleted. The list is locked
        first (creates and moves into it finish before, or find it gone), then its tasks in id
        order, and last, with the first write, the owner's change lock."""

        async def work(tx: Transaction) -> None:
            owned: dict[str, Any] = {"owner_id": self._owner_id, "list_id": list_id}
            locked = await tx.fetch_one(LOCK_LIST_FOR_DELETE, **owned)
            if locked is None:
                raise await self._missing()
            if locked["is_default"]:
                raise DefaultListProtectedError()
            if precondition is not None and not precondition.matches(locked["version"]):
                current = await tx.fetch_one(GET_LIST, **owned)
                assert current is not None  # locked above
                raise ListVersionConflictError.about(current)
            await tx.fetch_all(LOCK_LIST_TASKS, **owned)
            await tx.execute(TRASH_LIST_TASKS, **owned)
            deleted = await self._last(tx, DELETE_LIST, idempotency, list_id=list_id)
            assert deleted is not None  # locked, live, not the default

        written = await self._write_in_transaction(idempotency, work)
        return written if isinstance(written, StoredResponse) else None

    async def move(
        self,
        list_id: uuid.UUID,
        *,
        before_id: uuid.UUID | None = None,
        after_id: uuid.UUID | None = None,
        precondition: Precondition | None = None,
        idempotency: IdempotentRequest | None = None,
    ) -> Written | StoredResponse:
        """Put the list directly before ``before_id``, after ``after_id``, or last, with every
        live list of the owner locked (LOCK_ALL_LISTS)."""
        if list_id in (before_id, after_id):
            raise AnchorIsItselfError()

        async def work(tx: Transaction) -> Written:
            versions = {
                row["id"]: row["version"]
                for row in await tx.fetch_all(LOCK_ALL_LISTS, owner_id=self._owner_id)
            }
            if list_id not in versions:
                raise await self._missing()
            if precondition is not None and not precondition.matches(versions[list_id]):
                current = await tx.fetch_one(GET_LIST, owner_id=self._owner_id, list_id=list_id)
                assert current is not None  # locked above
                raise ListVersionConflictError.about(current)
            position = await place(
                tx,
                LIST_PLACEMENT,
                owner_id=self._owner_id,
                scope=self._owner_id,
                item_id=list_id,
                before_id=before_id,
                after_id=after_id,
            )
            moved = await self._last(tx, MOVE_LIST, idempotency, list_id=list_id, position=position)
            assert moved is not None  # locked and live
            return moved

        return await self._write_in_transaction(idempotency, work)

    async def _missing(self) -> ListNotFoundError:
        await self._ensure_owner_exists()
        return ListNotFoundError()
