"""Every statement the task routes run, built from the `tasks` table and compiled once.

Each one filters on ``user_id = :owner_id``, and TaskRepository binds ``owner_id`` itself.
Variants (the list's filters, the columns an update sets, an If-Match, an Idempotency-Key) are
all compiled at import, so a request only looks its statement up.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from itertools import combinations
from typing import Any, cast

from sqlalchemy import (
    Column,
    ColumnElement,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal_column,
    null,
    select,
    tuple_,
    update,
)

from app.db.statements import DriverJSON, Statement, compile_statement
from app.idempotency.statements import Guard, Write, WriteBuilder, WriteStatements
from app.lists.models import List
from app.positions.placement import PlacementStatements
from app.tasks.models import Task
from app.tasks.schemas import TaskRead, TrashedTask

tasks = cast(Table, Task.__table__)
lists = cast(Table, List.__table__)


def _text(value: ColumnElement[Any], pattern: str) -> ColumnElement[str]:
    # to_char with a fixed pattern: the same text whatever the session's DateStyle or zone.
    return func.to_char(value, literal_column(f"'{pattern}'"))


# The due as the API writes it (tasks/due.py DueOut): built by PostgreSQL, decoded by the driver.
_DUE = case(
    (
        tasks.c.due_timezone.is_not(None),
        func.json_build_object(
            literal_column("'datetime'"),
            _text(tasks.c.due_datetime, 'YYYY-MM-DD"T"HH24:MI:SS'),
            literal_column("'timezone'"),
            tasks.c.due_timezone,
            literal_column("'at'"),
            _text(
                func.timezone(literal_column("'UTC'"), tasks.c.due_at), 'YYYY-MM-DD"T"HH24:MI:SS"Z"'
            ),
        ),
    ),
    (
        tasks.c.due_date.is_not(None),
        func.json_build_object(literal_column("'date'"), _text(tasks.c.due_date, "YYYY-MM-DD")),
    ),
    else_=null(),
).cast(DriverJSON())
_COMPUTED: dict[str, ColumnElement[Any]] = {"due": _DUE}


def _columns(names: Iterable[str]) -> tuple[ColumnElement[Any], ...]:
    return tuple(
        _COMPUTED[name].label(name) if name in _COMPUTED else tasks.c[name] for name in names
    )


# The columns of a task as the API returns it, in TaskRead's order: the one list of them.
TASK_COLUMNS = _columns(TaskRead.model_fields)
TRASHED_COLUMNS = _columns(TrashedTask.model_fields)
UPDATABLE = ("title", "description", "completed", "priority", "due")
# The columns a due sets (tasks/due.py), one change for the API.
DUE_COLUMNS = ("due_date", "due_datetime", "due_timezone", "due_at")
# What a create writes besides the owner, its id and its list.
_CREATED = ("title", "description", "priority", *DUE_COLUMNS)

_OWNER = tasks.c.user_id == bindparam("owner_id")
# The task routes see the owner's live tasks; the trash routes the trashed ones.
_OWNED = and_(_OWNER, tasks.c.deleted_at.is_(None))
_THIS_TASK = (_OWNED, tasks.c.id == bindparam("task_id"))
_TRASHED = and_(_OWNER, tasks.c.deleted_at.is_not(None))
_THIS_TRASHED = (_TRASHED, tasks.c.id == bindparam("task_id"))
_OWNERS_LIST = and_(
    lists.c.user_id == bindparam("owner_id"),
    lists.c.id == bindparam("list_id"),
    lists.c.deleted_at.is_(None),
)

GET_TASK = compile_statement(select(*TASK_COLUMNS).where(*_THIS_TASK))
# Whether a list_id names a live list of the owner (asked when its filter found nothing).
LIVE_LIST = compile_statement(select(lists.c.id).where(_OWNERS_LIST))


def _create(*guards: Guard) -> Write:
    # INSERT ... SELECT, so that a keyed create can make it conditional on its claim; the id is
    # the client's when it chose one. Without a list the task goes to the owner's default list
    # (the tasks_record_change trigger).
    return (
        insert(tasks)
        .from_select(
            ["id", "user_id", *_CREATED],
            select(
                func.coalesce(bindparam("task_id", type_=tasks.c.id.type), func.gen_random_uuid()),
                bindparam("owner_id", type_=tasks.c.user_id.type),
                *_created_values(),
            ).where(*guards),
        )
        .returning(*TASK_COLUMNS)
    )


def _created_values() -> list[ColumnElement[Any]]:
    return [bindparam(name, type_=tasks.c[name].type) for name in _CREATED]


def _create_in_list(*guards: Guard) -> Write:
    # Only into a live list of the owner, which the SELECT locks (a key share) so that its
    # deletion waits for this task and then trashes it too, or this create finds it deleted.
    return (
        insert(tasks)
        .from_select(
            ["id", "user_id", *_CREATED, "list_id"],
            select(
                func.coalesce(bindparam("task_id", type_=tasks.c.id.type), func.gen_random_uuid()),
                lists.c.user_id,
                *_created_values(),
                lists.c.id,
            )
            .where(_OWNERS_LIST, *guards)
            .with_for_update(read=True, key_share=True),
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
    # Back to the end of its list, or of the owner's default list when its list was deleted;
    # the list is locked (a key share) so that its deletion cannot pass this restore unseen.
    home = (
        select(lists.c.id)
        .where(
            lists.c.user_id == tasks.c.user_id,
            lists.c.deleted_at.is_(None),
            (lists.c.id == tasks.c.list_id) | lists.c.is_default,
        )
        .order_by(lists.c.is_default)
        .limit(literal_column("1"))
        .with_for_update(read=True, key_share=True)
        .scalar_subquery()
    )
    return (
        update(tasks)
        .where(*_THIS_TRASHED, *guards)
        .values(deleted_at=null(), list_id=home)
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


def _update(changes: frozenset[str]) -> WriteBuilder:
    columns = [
        column for change in changes for column in (DUE_COLUMNS if change == "due" else (change,))
    ]
    values: dict[str, object] = {
        column: bindparam(column, type_=tasks.c[column].type) for column in columns
    }
    if "completed" in columns:
        # Completing keeps the first completion time when completing twice; reopening clears it.
        values["completed_at"] = case(
            (bindparam("completed"), func.coalesce(tasks.c.completed_at, func.now()))
        )

    def build(*guards: Guard) -> Write:
        return update(tasks).where(*_THIS_TASK, *guards).values(values).returning(*TASK_COLUMNS)

    return build


_VERSION = tasks.c.version
CREATE_TASK = WriteStatements.of(_create, status=201, version=None)
CREATE_TASK_IN_LIST = WriteStatements.of(_create_in_list, status=201, version=None)
TOGGLE_TASK = WriteStatements.of(_toggle, status=200, version=_VERSION)
TRASH_TASK = WriteStatements.of(_trash, status=204, version=_VERSION, stores_body=False)
RESTORE_TASK = WriteStatements.of(_restore, status=200, version=_VERSION)
PURGE_TASK = WriteStatements.of(_purge, status=204, version=_VERSION, stores_body=False)
EMPTY_TRASH = WriteStatements.of(_empty_trash, status=204, version=None, stores_body=False)


def _move(*guards: Guard) -> Write:
    # The move's checks ran under its locks (TaskRepository.move); a null position appends the
    # task to the list (the tasks_record_change trigger).
    return (
        update(tasks)
        .where(*_THIS_TASK, *guards)
        .values(
            list_id=bindparam("list_id", type_=tasks.c.list_id.type),
            position=bindparam("position", type_=tasks.c.position.type),
        )
        .returning(*TASK_COLUMNS)
    )


MOVE_TASK = WriteStatements.of(_move, status=200, version=None)
# The task about to move: its list and version, locked against other writes until the move ends.
TASK_TO_MOVE = compile_statement(
    select(tasks.c.list_id, tasks.c.version).where(*_THIS_TASK).with_for_update(key_share=True)
)
TASK_LIST = compile_statement(select(tasks.c.list_id).where(*_THIS_TASK))
TASK_PLACEMENT = PlacementStatements.of(tasks, tasks.c.list_id)


def _unchanged(*guards: Guard) -> Write:
    # An empty PATCH: the task as it is, under the same conditions and the same key as a write.
    return select(*TASK_COLUMNS).where(*_THIS_TASK, *guards)


@cache
def update_task(changes: frozenset[str]) -> WriteStatements:
    """The update of the fields in ``changes`` (of UPDATABLE); none reads the task. Compiled on
    first use: 32 variants, most of which a deployment never sends."""
    if not changes <= set(UPDATABLE):
        raise TypeError(f"not updatable: {', '.join(sorted(changes - set(UPDATABLE)))}")
    return WriteStatements.of(
        _update(changes) if changes else _unchanged, status=200, version=_VERSION
    )


# Every variant of update_task, for the tests that check each statement.
UPDATE_VARIANTS = tuple(
    frozenset(columns)
    for size in range(len(UPDATABLE) + 1)
    for columns in combinations(UPDATABLE, size)
)


def _newest_first(
    columns: tuple[ColumnElement[Any], ...],
    by: Column[Any],
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


# The trash, most recently deleted first; keyed by whether the listing continues after a cursor.
LIST_TRASH = {
    after_cursor: _newest_first(
        TRASHED_COLUMNS, tasks.c.deleted_at, [_TRASHED], after_cursor=after_cursor
    )
    for after_cursor in (False, True)
}
GET_TRASHED = compile_statement(select(*TRASHED_COLUMNS).where(*_THIS_TRASHED))
