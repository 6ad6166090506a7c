"""Placing an item (a task in a list, a list among the user's lists) before or after another.

The caller holds the lock that orders the scope's moves (the target list's row for tasks, the
user's list lock for lists) and has locked the item itself; appends need no lock
(positions/keys.py). Row locks are always taken before the owner's change lock, which every
write takes last (its trigger), so moves never deadlock with plain writes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Column,
    String,
    Table,
    UniqueConstraint,
    bindparam,
    column,
    func,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID

from app.db.database import Transaction
from app.db.statements import Statement, compile_statement
from app.positions.errors import AnchorNotFoundError
from app.positions.keys import REBALANCE_ABOVE, key_between, respace


@dataclass(frozen=True, slots=True)
class PlacementStatements:
    # Defers the unique check of the positions to the commit: a respace may hand a neighbour
    # the key the moved item holds until its own write, the transaction's last.
    defer_unique: Statement
    anchor: Statement  # the position of a live item of the scope
    before: Statement  # the greatest position below :position, the moved item aside
    after: Statement  # the least position above :position, the moved item aside
    keys: Statement  # the scope's ids and positions in order, the moved item aside
    lock: Statement  # locks those of the given items still in the scope, in id order
    respace: Statement  # sets the positions of several items of the scope at once

    @classmethod
    def of(cls, table: Table, scope: Column[Any]) -> PlacementStatements:
        owned = table.c.user_id == bindparam("owner_id")
        in_scope = (owned, scope == bindparam("scope"), table.c.position.is_not(None))
        [unique] = [
            constraint
            for constraint in table.constraints
            if isinstance(constraint, UniqueConstraint) and "position" in constraint.columns
        ]
        others = (*in_scope, table.c.id != bindparam("item_id"))
        position = table.c.position
        new = (
            func.unnest(
                bindparam("ids", type_=ARRAY(UUID(as_uuid=True))),
                bindparam("positions", type_=ARRAY(String)),
            )
            .table_valued(
                column("id", UUID(as_uuid=True)), column("position", String), name="respaced"
            )
            .render_derived(with_types=False)
        )
        return cls(
            # An identifier from the metadata, not a value: SET CONSTRAINTS takes no parameter.
            defer_unique=Statement(sql=f"SET CONSTRAINTS {unique.name} DEFERRED", parameters=()),
            anchor=compile_statement(
                select(position).where(*in_scope, table.c.id == bindparam("anchor_id"))
            ),
            before=compile_statement(
                select(position)
                .where(*others, position < bindparam("position", type_=position.type))
                .order_by(position.desc())
                .limit(literal_column("1"))
            ),
            after=compile_statement(
                select(position)
                .where(*others, position > bindparam("position", type_=position.type))
                .order_by(position)
                .limit(literal_column("1"))
            ),
            keys=compile_statement(select(table.c.id, position).where(*others).order_by(position)),
            lock=compile_statement(
                select(table.c.id)
                .where(*in_scope, table.c.id == func.any(bindparam("ids", type_=ARRAY(UUID()))))
                .order_by(table.c.id)
                .with_for_update(key_share=True)
            ),
            respace=compile_statement(
                update(table)
                .where(*in_scope, table.c.id == new.c.id)
                .values(position=new.c.position)
            ),
        )


async def place(
    tx: Transaction,
    statements: PlacementStatements,
    *,
    owner_id: uuid.UUID,
    scope: uuid.UUID,
    item_id: uuid.UUID,
    before_id: uuid.UUID | None = None,
    after_id: uuid.UUID | None = None,
) -> str | None:
    """The item's new position: directly before ``before_id`` or after ``after_id``, both live
    items of ``scope``; None for the end of the scope (the database appends it). Respaces
    neighbours when the key between would be long."""
    anchor_id = before_id if before_id is not None else after_id
    if anchor_id is None:
        return None
    scoped = {"owner_id": owner_id, "scope": scope}
    anchor = await tx.fetch_value(statements.anchor, **scoped, anchor_id=anchor_id)
    if anchor is None:
        raise AnchorNotFoundError()
    if before_id is not None:
        upper = anchor
        lower = await tx.fetch_value(statements.before, **scoped, item_id=item_id, position=anchor)
    else:
        lower = anchor
        upper = await tx.fetch_value(statements.after, **scoped, item_id=item_id, position=anchor)
        if upper is None:
            return None  # after the last item: an append
    key = key_between(lower, upper)
    if len(key) <= REBALANCE_ABOVE:
        return key
    rows = await tx.fetch_all(statements.keys, **scoped, item_id=item_id)
    keys = [row["position"] for row in rows]
    respacing = respace(keys, keys.index(upper))
    wanted = {rows[index]["id"]: key for index, key in respacing.neighbours.items()}
    # Locked before any is written (the owner's change lock comes with the first write). A
    # neighbour that left the scope meanwhile (trashed: nothing else moves items of a scope
    # whose lock the caller holds) is left out; the others keep their order.
    locked = await tx.fetch_all(statements.lock, **scoped, ids=sorted(wanted))
    ids = [row["id"] for row in locked]
    await tx.execute(statements.defer_unique)
    await tx.execute(
        statements.respace, **scoped, ids=ids, positions=[wanted[item] for item in ids]
    )
    return respacing.moved
