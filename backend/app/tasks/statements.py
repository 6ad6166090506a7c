"""Every statement the task routes run, built from the `tasks` table and compiled once.

Each one filters on ``user_id = :owner_id``, and TaskRepository binds ``owner_id`` itself.
Variants (the list's filters, the columns an update sets, an If-Match, an Idempotency-Key) are
all compiled at import, so a request only looks its statement up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations
from typing import cast

from sqlalchemy import (
    Column,
    ColumnElement,
    Integer,
    Table,
    and_,
    any_,
    bindparam,
    case,
    delete,
    func,
    insert,
    null,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY

from app.db.statements import Statement, compile_statement
from app.idempotency.statements import Write, keyed_write
from app.tasks.models import Task
from app.tasks.schemas import TaskRead, TrashedTask

tasks = cast(Table, Task.__table__)
# The columns of a task as the API returns it, in TaskRead's order: the one list of them.
TASK_COLUMNS = tuple(tasks.c[name] for name in TaskRead.model_fields)
TRASHED_COLUMNS = tuple(tasks.c[name] for name in TrashedTask.model_fields)
UPDATABLE = ("title", "description", "completed")

_OWNER = tasks.c.user_id == bindparam("owner_id")
# The task routes see the owner's live tasks; the trash routes the trashed ones.
_OWNED = and_(_OWNER, tasks.c.deleted_at.is_(None))
_THIS_TASK = (_OWNED, tasks.c.id == bindparam("task_id"))
_TRASHED = and_(_OWNER, tasks.c.deleted_at.is_not(None))
_THIS_TRASHED = (_TRASHED, tasks.c.id == bindparam("task_id"))
# If-Match: the task's version must be one of those named (bound as an int[]).
_VERSION_MATCHES = tasks.c.version == any_(bindparam("versions", type_=ARRAY(Integer)))

Guard = ColumnElement[bool]
WriteBuilder = Callable[..., Write]  # (*guards: Guard) -> the write, conditional on them

GET_TASK = compile_statement(select(*TASK_COLUMNS).where(*_THIS_TASK))


def _create(*guards: Guard) -> Write:
    # INSERT ... SELECT, so that a keyed create can make it conditional on its claim; the id is
    # the client's when it chose one.
    return (
        insert(tasks)
        .from_select(
            ["id", "user_id", "title", "description"],
            select(
                func.coalesce(bindparam("task_id", type_=tasks.c.id.type), func.gen_random_uuid()),
                bindparam("owner_id", type_=tasks.c.user_id.type),
                bindparam("title", type_=tasks.c.title.type),
                bindparam("description", type_=tasks.c.description.type),
            ).where(*guards),
        )
        .returning(*TASK_COLUMNS)
    )


def _toggle(*guards: Guard) -> Write:
    # Both SET expressions read the row's old values: atomic under concurrent toggles.
    return (
        update(tasks)
        .where(*_THIS_TASK, *guards)
        .values(
            completed=~tasks.c.completed,
            completed_at=case((tasks.c.completed, None), else_=func.now()),
        )
        .returning(*TASK_COLUMNS)
    )


def _trash(*guards: Guard) -> Write:
    # DELETE on a task moves it to the trash: its id stays taken, and the feed says "deleted".
    return (
        update(tasks)
        .where(*_THIS_TASK, *guards)
        .values(deleted_at=func.now())
        .returning(tasks.c.id)
    )


def _restore(*guards: Guard) -> Write:
    return (
        update(tasks)
        .where(*_THIS_TRASHED, *guards)
        .values(deleted_at=null())
        .returning(*TASK_COLUMNS)
    )


def _purge(*guards: Guard) -> Write:
    return delete(tasks).where(*_THIS_TRASHED, *guards).returning(tasks.c.id)


def _empty_trash(*guards: Guard) -> Write:
    # One row whatever the trash held, so that a keyed empty stores (and replays) one answer;
    # none when a guard (the key's claim) fails, so that nothing is stored then (HAVING: an
    # aggregate's WHERE would still leave its one row).
    purged = delete(tasks).where(_TRASHED, *guards).returning(tasks.c.id).cte("purged")
    counted = select(func.count().label("purged")).select_from(purged)
    return counted.having(and_(*guards)) if guards else counted


def _update(columns: frozenset[str]) -> WriteBuilder:
    values: dict[str, object] = {column: bindparam(column) for column in columns}
    if "completed" in columns:
        # Completing keeps the first completion time when completing twice; reopening clears it.
        values["completed_at"] = case(
            (bindparam("completed"), func.coalesce(tasks.c.completed_at, func.now()))
        )

    def build(*guards: Guard) -> Write:
        return update(tasks).where(*_THIS_TASK, *guards).values(values).returning(*TASK_COLUMNS)

    return build


@dataclass(frozen=True, slots=True)
class WriteStatements:
    """One write, compiled with and without an If-Match condition and an Idempotency-Key."""

    plain: Statement
    keyed: Statement  # with its key (idempotency/statements.py)
    # ... AND version = ANY(:versions); a create has no version to match.
    conditional: Statement | None
    keyed_conditional: Statement | None

    @classmethod
    def of(
        cls,
        build: WriteBuilder,
        *,
        status: int,
        stores_body: bool = True,
        conditional: bool = True,
    ) -> WriteStatements:
        def keyed(*guards: Guard) -> Statement:
            return keyed_write(
                lambda claimed: build(claimed, *guards), status=status, stores_body=stores_body
            )

        return cls(
            plain=compile_statement(build()),
            keyed=keyed(),
            conditional=compile_statement(build(_VERSION_MATCHES)) if conditional else None,
            keyed_conditional=keyed(_VERSION_MATCHES) if conditional else None,
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


CREATE_TASK = WriteStatements.of(_create, status=201, conditional=False)
TOGGLE_TASK = WriteStatements.of(_toggle, status=200)
TRASH_TASK = WriteStatements.of(_trash, status=204, stores_body=False)
RESTORE_TASK = WriteStatements.of(_restore, status=200)
PURGE_TASK = WriteStatements.of(_purge, status=204, stores_body=False)
EMPTY_TRASH = WriteStatements.of(_empty_trash, status=204, stores_body=False, conditional=False)


def _unchanged(*guards: Guard) -> Write:
    # An empty PATCH: the task as it is, under the same conditions and the same key as a write.
    return select(*TASK_COLUMNS).where(*_THIS_TASK, *guards)


# Keyed by the set of columns the update sets; the empty set reads the task.
UPDATE_TASK = {
    frozenset(columns): WriteStatements.of(
        _update(frozenset(columns)) if columns else _unchanged, status=200
    )
    for size in range(len(UPDATABLE) + 1)
    for columns in combinations(UPDATABLE, size)
}


def _newest_first(
    columns: tuple[Column[object], ...],
    by: Column[object],
    conditions: list[ColumnElement[bool]],
    *,
    after_cursor: bool,
) -> Statement:
    """``by`` descending, then id, ``limit`` rows; after a cursor, the rows that sort after
    (``after_<by>``, ``after_id``)."""
    if after_cursor:
        conditions = [
            *conditions,
            tuple_(by, tasks.c.id)
            < tuple_(
                bindparam(f"after_{by.name}", type_=by.type),
                bindparam("after_id", type_=tasks.c.id.type),
            ),
        ]
    return compile_statement(
        select(*columns)
        .where(*conditions)
        .order_by(by.desc(), tasks.c.id.desc())
        .limit(bindparam("limit"))
    )


# Keyed by (filters on completed, continues after a cursor).
LIST_TASKS = {
    (by_completed, after_cursor): _newest_first(
        TASK_COLUMNS,
        tasks.c.created_at,
        [_OWNED, tasks.c.completed == bindparam("completed")] if by_completed else [_OWNED],
        after_cursor=after_cursor,
    )
    for by_completed in (False, True)
    for after_cursor in (False, True)
}
# The trash, most recently deleted first; keyed by whether the listing continues after a cursor.
LIST_TRASH = {
    after_cursor: _newest_first(
        TRASHED_COLUMNS, tasks.c.deleted_at, [_TRASHED], after_cursor=after_cursor
    )
    for after_cursor in (False, True)
}
GET_TRASHED = compile_statement(select(*TRASHED_COLUMNS).where(*_THIS_TRASHED))
