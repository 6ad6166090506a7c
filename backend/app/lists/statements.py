"""Every statement the list routes run, compiled once; each filters on ``user_id =
:owner_id``, which ListRepository binds itself."""

from __future__ import annotations

from typing import cast

from sqlalchemy import Integer, Table, and_, bindparam, func, insert, literal_column, select, update
from sqlalchemy.dialects.postgresql import ARRAY

from app.db.statements import compile_statement
from app.idempotency.statements import Guard, Write, WriteStatements
from app.lists.models import List
from app.lists.schemas import ListRead
from app.positions.placement import PlacementStatements
from app.tasks.statements import tasks

lists = cast(Table, List.__table__)

_OWNER = lists.c.user_id == bindparam("owner_id")
_LIVE = and_(_OWNER, lists.c.deleted_at.is_(None))
_THIS_LIST = (_LIVE, lists.c.id == bindparam("list_id"))


def _count(completed: bool) -> object:
    # The list's live tasks (a trashed task has no position), from the index on (list_id,
    # position) that includes `completed`.
    return (
        select(func.count())
        .where(
            tasks.c.list_id == lists.c.id,
            tasks.c.position.is_not(None),
            tasks.c.completed.is_(completed),
        )
        .scalar_subquery()
    )


_COMPUTED = {"open_tasks": _count(False), "completed_tasks": _count(True)}
# A list as the API returns it, in ListRead's order.
LIST_COLUMNS = tuple(
    _COMPUTED[name].label(name) if name in _COMPUTED else lists.c[name]  # type: ignore[attr-defined]
    for name in ListRead.model_fields
)

GET_LIST = compile_statement(select(*LIST_COLUMNS).where(*_THIS_LIST))
ALL_LISTS = compile_statement(
    select(*LIST_COLUMNS).where(_LIVE).order_by(lists.c.position, lists.c.id)
)
# The lock that orders the moves into and out of lists (and their deletions' wait for them):
# the live ones of the given lists, in id order, so two moves between the same two lists take
# them in the same order.
LOCK_LISTS_FOR_MOVES = compile_statement(
    select(lists.c.id)
    .where(_LIVE, lists.c.id == func.any(bindparam("ids", type_=ARRAY(lists.c.id.type))))
    .order_by(lists.c.id)
    .with_for_update(key_share=True)
)
# The lock of a list being deleted: waits for the creates and moves into it to commit.
LOCK_LIST_FOR_DELETE = compile_statement(
    select(lists.c.is_default, lists.c.version).where(*_THIS_LIST).with_for_update()
)
# A move among the owner's lists locks them all, in id order, as task moves lock theirs: the
# neighbours its respace may rewrite are then held before any is written, and a task move
# (which locks one or two of them, in id order) never waits on a list move that waits on it.
LOCK_ALL_LISTS = compile_statement(
    select(lists.c.id, lists.c.version)
    .where(_LIVE)
    .order_by(lists.c.id)
    .with_for_update(key_share=True)
)
LIST_PLACEMENT = PlacementStatements.of(lists, lists.c.user_id)


# What a create returns: a new list has no tasks yet. (A count in an INSERT's RETURNING is not
# correlated with the inserted row: it would count every list's tasks.)
_CREATED_COLUMNS = tuple(
    literal_column("0", Integer).label(column.name) if column.name in _COMPUTED else column
    for column in LIST_COLUMNS
)


def _create(*guards: Guard) -> Write:
    return (
        insert(lists)
        .from_select(
            ["id", "user_id", "name"],
            select(
                func.coalesce(bindparam("list_id", type_=lists.c.id.type), func.gen_random_uuid()),
                bindparam("owner_id", type_=lists.c.user_id.type),
                bindparam("name", type_=lists.c.name.type),
            ).where(*guards),
        )
        .returning(*_CREATED_COLUMNS)
    )


def _rename(*guards: Guard) -> Write:
    return (
        update(lists)
        .where(*_THIS_LIST, *guards)
        .values(name=bindparam("name"))
        .returning(*LIST_COLUMNS)
    )


def _unchanged(*guards: Guard) -> Write:
    return select(*LIST_COLUMNS).where(*_THIS_LIST, *guards)


def _delete(*guards: Guard) -> Write:
    # The list's row stays, for the change feed; its tasks went to the trash just before.
    return (
        update(lists)
        .where(*_THIS_LIST, ~lists.c.is_default, *guards)
        .values(deleted_at=func.now())
        .returning(lists.c.id)
    )


def _move(*guards: Guard) -> Write:
    # A null position appends the list (the lists_record_change trigger).
    return (
        update(lists)
        .where(*_THIS_LIST, *guards)
        .values(position=bindparam("position", type_=lists.c.position.type))
        .returning(*LIST_COLUMNS)
    )


CREATE_LIST = WriteStatements.of(_create, status=201, version=None)
RENAME_LIST = WriteStatements.of(_rename, status=200, version=lists.c.version)
READ_LIST = WriteStatements.of(_unchanged, status=200, version=lists.c.version)
DELETE_LIST = WriteStatements.of(_delete, status=204, version=None, stores_body=False)
MOVE_LIST = WriteStatements.of(_move, status=200, version=None)
# The live tasks of a list being deleted, locked in id order before any is changed.
LOCK_LIST_TASKS = compile_statement(
    select(tasks.c.id)
    .where(
        tasks.c.user_id == bindparam("owner_id"),
        tasks.c.list_id == bindparam("list_id"),
        tasks.c.deleted_at.is_(None),
    )
    .order_by(tasks.c.id)
    .with_for_update()
)
TRASH_LIST_TASKS = compile_statement(
    update(tasks)
    .where(
        tasks.c.user_id == bindparam("owner_id"),
        tasks.c.list_id == bindparam("list_id"),
        tasks.c.deleted_at.is_(None),
    )
    .values(deleted_at=func.now())
)
