"""A write and its idempotency key in one statement: one round trip, one transaction.

`keyed_write` wraps a write (INSERT/UPDATE/DELETE ... RETURNING) in CTEs that, in one snapshot:

- read the key's stored row (``existing``); when there is one, nothing is written and the
  caller compares fingerprints and replays it;
- otherwise try the key's transaction-scoped advisory lock (``claim``): false means another
  request with this key is running now (409, retry later), and nothing is written;
- run the write only when the claim succeeded, and insert the key row with the response's
  status and the written row rendered as JSON (``stored``).

Two requests racing past ``existing`` are split by the lock; a request that takes the lock just
after the first one committed still cannot write twice, because its key insert then violates
the primary key and the whole statement rolls back (`IdempotencyKeyTaken`), after which the
caller runs it again and finds the stored row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    Column,
    ColumnElement,
    Integer,
    Table,
    Text,
    and_,
    any_,
    bindparam,
    exists,
    func,
    insert,
    literal_column,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.sql import Select
from sqlalchemy.sql.dml import ReturningDelete, ReturningInsert, ReturningUpdate

from app.db.statements import Statement, compile_statement
from app.idempotency.models import IdempotencyKey

idempotency_keys = cast(Table, IdempotencyKey.__table__)
# A statement whose rows a keyed write stores; a SELECT answers a request that changes nothing
# (an empty PATCH) under its key like any write.
Write = ReturningInsert[object] | ReturningUpdate[object] | ReturningDelete[object] | Select[Any]

# The outcome columns come first; the written row's columns follow under their own names.
CLAIMED = "key_claimed"
STORED_FINGERPRINT = "key_fingerprint"
STORED_STATUS = "key_status"
STORED_BODY = "key_body"
# The written row's columns follow these four. Its first column is never null in a row the
# write returned (an id, a count), so a null there means the write matched nothing.
WRITTEN_FIRST_COLUMN = 4

_OWNER = bindparam("owner_id", type_=UUID(as_uuid=True))
_KEY = bindparam("idempotency_key", type_=idempotency_keys.c.key.type)
_FINGERPRINT = bindparam("fingerprint", type_=idempotency_keys.c.fingerprint.type)
# The key's transaction-scoped advisory lock. The owner's id is 36 characters as text, so owner
# and key concatenate unambiguously.
_LOCK_ID = func.hashtextextended(func.concat(_OWNER.cast(Text), _KEY), literal_column("0"))


def keyed_write(
    write: Callable[[ColumnElement[bool]], Write], *, status: int, stores_body: bool = True
) -> Statement:
    """``write(guard)`` must build the write with ``guard`` among its conditions (a WHERE for
    UPDATE and DELETE, the SELECT's WHERE for INSERT ... SELECT) and bind ``owner_id``; the
    response it stands for has ``status`` and, if ``stores_body``, the written row as body."""
    existing = (
        select(idempotency_keys.c.fingerprint, idempotency_keys.c.status, idempotency_keys.c.body)
        .where(idempotency_keys.c.user_id == _OWNER, idempotency_keys.c.key == _KEY)
        .cte("existing")
    )
    claim = (
        select(func.pg_try_advisory_xact_lock(_LOCK_ID).label("claimed"))
        .where(~exists(existing.select()))
        .cte("claim")
    )
    claimed = select(claim.c.claimed).scalar_subquery()
    written = write(claimed.is_(true())).cte("written")
    stored = insert(idempotency_keys).from_select(
        ["user_id", "key", "fingerprint", "status", "body"],
        select(
            _OWNER,
            _KEY,
            _FINGERPRINT,
            literal_column(str(status)),
            func.to_json(written.table_valued()).cast(Text)
            if stores_body
            else literal_column("NULL", Text),
        ).select_from(written),
    )
    one = select(literal_column("1").label("one")).subquery("one")
    outcome = (
        select(
            claimed.label(CLAIMED),
            select(existing.c.fingerprint).scalar_subquery().label(STORED_FINGERPRINT),
            select(existing.c.status).scalar_subquery().label(STORED_STATUS),
            select(existing.c.body).scalar_subquery().label(STORED_BODY),
            *written.c,
        )
        .select_from(one.outerjoin(written, true()))
        .add_cte(stored.cte("stored"))
    )
    return compile_statement(outcome)


# The first statement of a write of several statements with a key (replay.py
# run_keyed_transaction): the key's lock, held to the end of the transaction (a second request
# with the key meanwhile is told the key is in use), and the key's stored answer, if any. The
# write's last statement (keyed_write) then takes the same lock again, at no cost.
CLAIM_KEY = compile_statement(
    select(
        func.pg_try_advisory_xact_lock(_LOCK_ID).label(CLAIMED),
        idempotency_keys.c.fingerprint.label(STORED_FINGERPRINT),
        idempotency_keys.c.status.label(STORED_STATUS),
        idempotency_keys.c.body.label(STORED_BODY),
    ).select_from(
        select(literal_column("1").label("one"))
        .subquery("one")
        .outerjoin(
            idempotency_keys,
            and_(idempotency_keys.c.user_id == _OWNER, idempotency_keys.c.key == _KEY),
        )
    )
)

# The key's stored answer alone: read again when a keyed write claimed the key but wrote
# nothing, in case the key's first request committed between that statement's snapshot and its
# claim (replay.py).
STORED_ANSWER = compile_statement(
    select(
        idempotency_keys.c.fingerprint.label(STORED_FINGERPRINT),
        idempotency_keys.c.status.label(STORED_STATUS),
        idempotency_keys.c.body.label(STORED_BODY),
    ).where(idempotency_keys.c.user_id == _OWNER, idempotency_keys.c.key == _KEY)
)


Guard = ColumnElement[bool]
WriteBuilder = Callable[..., Write]  # (*guards: Guard) -> the write, conditional on them


def version_matches(version: Column[int]) -> Guard:
    """If-Match: the version must be one of those named (bound as an int[])."""
    return version == any_(bindparam("versions", type_=ARRAY(Integer)))


@dataclass(frozen=True, slots=True)
class WriteStatements:
    """One write, compiled with and without an If-Match condition and an Idempotency-Key."""

    plain: Statement
    keyed: Statement  # with its key (keyed_write)
    # ... AND version = ANY(:versions); a create has no version to match.
    conditional: Statement | None
    keyed_conditional: Statement | None

    @classmethod
    def of(
        cls,
        build: WriteBuilder,
        *,
        status: int,
        version: Column[int] | None,
        stores_body: bool = True,
    ) -> WriteStatements:
        """``version``: the column If-Match compares (None: the write takes no If-Match)."""

        def keyed(*guards: Guard) -> Statement:
            return keyed_write(
                lambda claimed: build(claimed, *guards), status=status, stores_body=stores_body
            )

        matches = version_matches(version) if version is not None else None
        return cls(
            plain=compile_statement(build()),
            keyed=keyed(),
            conditional=compile_statement(build(matches)) if matches is not None else None,
            keyed_conditional=keyed(matches) if matches is not None else None,
        )

    def pick(self, *, conditional: bool, keyed: bool) -> Statement:
        statement = (
            (self.keyed_conditional if conditional else self.keyed)
            if keyed
            else (self.conditional if conditional else self.plain)
        )
        if statement is None:
            raise TypeError("this write takes no If-Match")
        return statement
