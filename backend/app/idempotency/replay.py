"""Running a keyed write (statements.py) and reading its outcome: written, replayed, refused."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

from app.db.database import Database, Row, Transaction
from app.db.statements import Statement
from app.idempotency.errors import IdempotencyKeyInUseError, IdempotencyKeyReusedError
from app.idempotency.keys import IdempotentRequest
from app.idempotency.statements import (
    CLAIM_KEY,
    CLAIMED,
    STORED_ANSWER,
    STORED_BODY,
    STORED_FINGERPRINT,
    STORED_STATUS,
    WRITTEN_FIRST_COLUMN,
)

KEY_CONSTRAINT = "pk_idempotency_keys"
# A key whose first request committed between our snapshot and our claim makes our statement
# fail on the key's primary key (and roll back); run once more, it finds the stored response.
_ATTEMPTS = 3
_OUTCOME = frozenset({CLAIMED, STORED_FINGERPRINT, STORED_STATUS, STORED_BODY})
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """What the first request with this key answered: the status and the written resource as
    PostgreSQL rendered it to JSON (None for a 204)."""

    status: int
    body: str | None


async def run_keyed(
    run: Callable[..., Awaitable[Row | None]],
    statement: Statement,
    request: IdempotentRequest,
    /,
    **values: Any,
) -> dict[str, Any] | StoredResponse | None:
    """The written row, the stored response to replay, or None when the key was claimed but the
    write matched no row (missing, not the owner's, or a failed If-Match: the caller asks why).
    Raises when the key belongs to another request (422) or one with it is running (409)."""
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            row = await run(
                statement, idempotency_key=request.key, fingerprint=request.fingerprint, **values
            )
        except asyncpg.UniqueViolationError as error:
            if error.constraint_name == KEY_CONSTRAINT and attempt < _ATTEMPTS:
                continue
            # Another unique key (a client-chosen task id) may have been taken by this key's
            # own first request, committed just after our snapshot: that is its answer.
            stored = await run(STORED_ANSWER, idempotency_key=request.key)
            if stored is not None:
                return _stored(stored, request)
            raise
        assert row is not None  # the outcome SELECT has no FROM that could be empty
        if row[STORED_STATUS] is not None:
            return _stored(row, request)
        if not row[CLAIMED]:
            raise IdempotencyKeyInUseError()
        if row[WRITTEN_FIRST_COLUMN] is not None:
            return {name: value for name, value in row.items() if name not in _OUTCOME}
        # Nothing written: the row is missing, or its version is not If-Match's. Unless the
        # key's first request committed just after this statement's snapshot was taken (and
        # released the key's lock just before the claim): then the row it changed or deleted no
        # longer matched, and the answer is the first request's, not a 404 or a 412.
        stored = await run(STORED_ANSWER, idempotency_key=request.key)
        return _stored(stored, request) if stored is not None else None
    raise AssertionError("unreachable: the last attempt returns or raises")


class KeyAnsweredError(Exception):
    """Raised by `keyed_last` when the key already has an answer: it rolls back the work of
    the transaction it ends, and `run_keyed_transaction` replays the answer."""

    def __init__(self, stored: StoredResponse) -> None:
        super().__init__("the key already has an answer")
        self.stored = stored


async def keyed_last(
    tx: Transaction, statement: Statement, request: IdempotentRequest, /, **values: Any
) -> dict[str, Any] | None:
    """The keyed write that ends a transaction of several statements: the written row, or None
    when it matched nothing. A key with an answer raises KeyAnsweredError, one in use 409; a key
    whose first request committed meanwhile fails the transaction on the key's primary key,
    and `run_keyed_transaction` runs it again."""
    row = await tx.fetch_one(
        statement, idempotency_key=request.key, fingerprint=request.fingerprint, **values
    )
    assert row is not None  # the outcome SELECT has no FROM that could be empty
    if row[STORED_STATUS] is not None:
        raise KeyAnsweredError(_stored(row, request))
    if not row[CLAIMED]:
        raise IdempotencyKeyInUseError()
    if row[WRITTEN_FIRST_COLUMN] is None:
        return None
    return {name: value for name, value in row.items() if name not in _OUTCOME}


async def run_keyed_transaction(
    database: Database,
    owner_id: object,
    request: IdempotentRequest,
    work: Callable[[Transaction], Awaitable[T]],
) -> T | StoredResponse:
    """``work`` (which ends with `keyed_last`) in one transaction that holds the key's lock
    from its first statement on: a request with the same key meanwhile is refused (409, retry
    later) instead of running, and one after the commit replays the stored answer. A key
    answered by a request that committed just before the lock was taken rolls ``work`` back
    and replays that answer."""
    try:
        async with database.transaction() as tx:
            claim = await tx.fetch_one(CLAIM_KEY, owner_id=owner_id, idempotency_key=request.key)
            assert claim is not None  # an outer join from one row: one row
            if claim[STORED_STATUS] is not None:
                raise KeyAnsweredError(_stored(claim, request))
            if not claim[CLAIMED]:
                raise IdempotencyKeyInUseError()
            return await work(tx)
    except KeyAnsweredError as answered:
        return answered.stored
    except asyncpg.UniqueViolationError as error:
        # The key's first request committed after this transaction's claim read the keys.
        if error.constraint_name != KEY_CONSTRAINT:
            raise
        stored = await database.fetch_one(
            STORED_ANSWER, owner_id=owner_id, idempotency_key=request.key
        )
        if stored is None:
            raise
        return _stored(stored, request)


def _stored(row: Row, request: IdempotentRequest) -> StoredResponse:
    if row[STORED_FINGERPRINT] != request.fingerprint:
        raise IdempotencyKeyReusedError()
    return StoredResponse(status=row[STORED_STATUS], body=row[STORED_BODY])
