"""A repository base for every owner's resource in the change feed (a task, a list): it runs
statements for one owner and announces each committed change to the owner's event streams."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from app.auth.repository import UserRepository
from app.changes.models import TASK_CHANGES_CHANNEL
from app.db.database import Database, Row, Transaction
from app.db.errors import DatabaseUnavailableError
from app.db.statements import Statement
from app.http.conditional import Precondition
from app.idempotency.keys import IdempotentRequest
from app.idempotency.replay import (
    StoredResponse,
    keyed_last,
    run_keyed,
    run_keyed_transaction,
)
from app.idempotency.statements import WriteStatements

# A written resource: the driver's row, or the written columns of a keyed write's outcome.
Written = Row | Mapping[str, Any]
T = TypeVar("T")


class ChangeRepository:
    """Scoped to the one owner given at construction: `_one`/`_all` bind ``owner_id`` to every
    statement, always, and no method takes another owner's id or a statement from outside."""

    def __init__(self, database: Database, owner_id: uuid.UUID) -> None:
        self._database = database
        self._owner_id = owner_id

    @property
    def owner_id(self) -> uuid.UUID:
        return self._owner_id

    async def _write(
        self,
        statements: WriteStatements,
        precondition: Precondition | None,
        idempotency: IdempotentRequest | None,
        **values: Any,
    ) -> Written | StoredResponse | None:
        """One write as its own transaction (a keyed one stores its key in the same statement);
        None when it matched no row."""
        conditional = precondition is not None and precondition.versions is not None
        if conditional:
            assert precondition is not None
            assert precondition.versions is not None
            values["versions"] = precondition.versions
        statement = statements.pick(conditional=conditional, keyed=idempotency is not None)
        written: Written | StoredResponse | None
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

    async def _write_in_transaction(
        self,
        idempotency: IdempotentRequest | None,
        work: Callable[[Transaction], Awaitable[T]],
    ) -> T | StoredResponse:
        """``work`` in one transaction, committed before this returns; with a key, ``work``
        ends with `_last` and a key that already has an answer replays it instead."""
        try:
            if idempotency is None:
                async with self._database.transaction() as tx:
                    return await work(tx)
            return await run_keyed_transaction(self._database, self._owner_id, idempotency, work)
        finally:
            # Announced even when it failed, as a lost connection may have hidden a commit (see
            # _write); an announcement of nothing costs a stream one read. Moves are rare.
            self._announce_change()

    async def _last(
        self,
        tx: Transaction,
        statements: WriteStatements,
        idempotency: IdempotentRequest | None,
        **values: Any,
    ) -> Written | None:
        """The write that ends a `_write_in_transaction`'s work: plain, or with its key."""
        if idempotency is None:
            return await tx.fetch_one(statements.plain, owner_id=self._owner_id, **values)
        return await keyed_last(
            tx, statements.keyed, idempotency, owner_id=self._owner_id, **values
        )

    def _announce_change(self) -> None:
        """The owner's event streams, in every process, read their feed (a wake that finds
        nothing costs one read)."""
        self._database.notifications.send(TASK_CHANGES_CHANNEL, str(self._owner_id))

    async def _one(self, statement: Statement, **values: Any) -> Row | None:
        """Run one statement for this owner; its first row, if any."""
        return await self._database.fetch_one(statement, owner_id=self._owner_id, **values)

    async def _all(self, statement: Statement, **values: Any) -> list[Row]:
        """Run one statement for this owner; all its rows."""
        return await self._database.fetch_all(statement, owner_id=self._owner_id, **values)

    async def _ensure_owner_exists(self) -> None:
        """An empty answer is an answer only for an account that exists (401 otherwise)."""
        await UserRepository(self._database).ensure_exists(self._owner_id)
