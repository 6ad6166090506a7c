"""Every statement the task routes run, built from the `tasks` table and compiled once.

Each one filters on ``user_id = :owner_id``, and TaskRepository binds ``owner_id`` itself.
Variants (the list's filters, the columns an update sets) are all compiled at import, so a
request only looks its statement up.
"""

from __future__ import annotations

from itertools import combinations
from typing import cast

from sqlalchemy import (
    ColumnElement,
    Table,
    bindparam,
    case,
    delete,
    func,
    insert,
    select,
    tuple_,
    update,
)

from app.db.statements import Statement, compile_statement
from app.tasks.models import Task
from app.tasks.schemas import TaskRead

tasks = cast(Table, Task.__table__)
# The columns of a task as the API returns it, in TaskRead's order: the one list of them.
TASK_COLUMNS = tuple(tasks.c[name] for name in TaskRead.model_fields)
UPDATABLE = ("title", "description", "completed")

_OWNED = tasks.c.user_id == bindparam("owner_id")
_THIS_TASK = (_OWNED, tasks.c.id == bindparam("task_id"))

GET_TASK = compile_statement(select(*TASK_COLUMNS).where(*_THIS_TASK))
CREATE_TASK = compile_statement(
    insert(tasks)
    .values(
        user_id=bindparam("owner_id"),
        title=bindparam("title"),
        description=bindparam("description"),
    )
    .returning(*TASK_COLUMNS)
)
# Both SET expressions read the row's old values: atomic under concurrent toggles.
TOGGLE_TASK = compile_statement(
    update(tasks)
    .where(*_THIS_TASK)
    .values(
        completed=~tasks.c.completed,
        completed_at=case((tasks.c.completed, None), else_=func.now()),
    )
    .returning(*TASK_COLUMNS)
)
DELETE_TASK = compile_statement(delete(tasks).where(*_THIS_TASK).returning(tasks.c.id))


def _list_statement(*, by_completed: bool, after_cursor: bool) -> Statement:
    """Newest first (created_at, then id, descending), ``limit`` rows."""
    conditions: list[ColumnElement[bool]] = [_OWNED]
    if by_completed:
        conditions.append(tasks.c.completed == bindparam("completed"))
    if after_cursor:
        conditions.append(
            tuple_(tasks.c.created_at, tasks.c.id)
            < tuple_(
                bindparam("after_created_at", type_=tasks.c.created_at.type),
                bindparam("after_id", type_=tasks.c.id.type),
            )
        )
    return compile_statement(
        select(*TASK_COLUMNS)
        .where(*conditions)
        .order_by(tasks.c.created_at.desc(), tasks.c.id.desc())
        .limit(bindparam("limit"))
    )


def _update_statement(columns: frozenset[str]) -> Statement:
    values: dict[str, object] = {column: bindparam(column) for column in columns}
    if "completed" in columns:
        # Completing keeps the first completion time when completing twice; reopening clears it.
        values["completed_at"] = case(
            (bindparam("completed"), func.coalesce(tasks.c.completed_at, func.now()))
        )
    return compile_statement(
        update(tasks).where(*_THIS_TASK).values(values).returning(*TASK_COLUMNS)
    )


# Keyed by (filters on completed, continues after a cursor).
LIST_TASKS = {
    (by_completed, after_cursor): _list_statement(
        by_completed=by_completed, after_cursor=after_cursor
    )
    for by_completed in (False, True)
    for after_cursor in (False, True)
}
# Keyed by the set of columns the update sets.
UPDATE_TASK = {
    frozenset(columns): _update_statement(frozenset(columns))
    for size in range(1, len(UPDATABLE) + 1)
    for columns in combinations(UPDATABLE, size)
}
