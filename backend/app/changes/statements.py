"""The change feed's statements: the owner's bounds, and one page of changes after a number.

Tasks and lists share the owner's numbering; a page of lists is read beside a page of tasks
only for a client that asked for lists (feed.py merges the two).

A page is the owner's tasks whose change number is above the cursor (live ones as upserts,
trashed ones as deletions) and the tombstones above it (deletions), in number order. A task
changed several times since the cursor is one row, in its latest state: the row is the change.
"""

from __future__ import annotations

from typing import cast

from sqlalchemy import (
    BigInteger,
    Table,
    bindparam,
    func,
    literal_column,
    null,
    select,
    union_all,
)
from sqlalchemy import cast as sql_cast

from app.changes.models import ChangeHead, TaskTombstone
from app.db.statements import compile_statement
from app.lists.statements import LIST_COLUMNS, lists
from app.tasks.statements import TASK_COLUMNS, tasks

change_heads = cast(Table, ChangeHead.__table__)
tombstones = cast(Table, TaskTombstone.__table__)

_OWNER = bindparam("owner_id", type_=change_heads.c.user_id.type)
_SINCE = bindparam("since", type_=BigInteger)
# A row of the feed: a task's columns as the API returns them, when it went to the trash (or
# was purged) and its change number.
FEED_COLUMNS = (*TASK_COLUMNS, tasks.c.deleted_at, tasks.c.change_seq)

# The owner's newest change number that is visible (of a task or a list: one numbering), and
# the highest one forgotten with a pruned tombstone (both 0 for an owner who never changed
# anything).
BOUNDS = compile_statement(
    select(
        func.coalesce(
            func.greatest(
                select(func.max(tasks.c.change_seq))
                .where(tasks.c.user_id == _OWNER)
                .scalar_subquery(),
                select(func.max(tombstones.c.change_seq))
                .where(tombstones.c.user_id == _OWNER)
                .scalar_subquery(),
                select(func.max(lists.c.change_seq))
                .where(lists.c.user_id == _OWNER)
                .scalar_subquery(),
            ),
            literal_column("0"),
        ).label("newest"),
        func.coalesce(
            select(change_heads.c.expired_through)
            .where(change_heads.c.user_id == _OWNER)
            .scalar_subquery(),
            literal_column("0"),
        ).label("expired_through"),
    )
)

_changed = select(*FEED_COLUMNS).where(tasks.c.user_id == _OWNER, tasks.c.change_seq > _SINCE)
_purged = select(
    *(
        {
            "id": tombstones.c.task_id,
            "deleted_at": tombstones.c.purged_at,
            "change_seq": tombstones.c.change_seq,
        }.get(column.name, sql_cast(null(), column.type)).label(column.name)
        for column in FEED_COLUMNS
    )
).where(tombstones.c.user_id == _OWNER, tombstones.c.change_seq > _SINCE)
_page = union_all(_changed, _purged).subquery("page")
CHANGES_AFTER = compile_statement(
    select(_page).order_by(_page.c.change_seq).limit(bindparam("limit"))
)
# Without a cursor: the live tasks alone, in the same order (a client that holds nothing needs
# no deletions).
SNAPSHOT = compile_statement(
    select(*FEED_COLUMNS)
    .where(tasks.c.user_id == _OWNER, tasks.c.deleted_at.is_(None), tasks.c.change_seq > _SINCE)
    .order_by(tasks.c.change_seq)
    .limit(bindparam("limit"))
)

# The owner's lists in the same feed, read beside the tasks when a client asks for them: a list
# is its own record (deleted lists stay, with deleted_at), as a task is.
LIST_FEED_COLUMNS = (*LIST_COLUMNS, lists.c.deleted_at, lists.c.change_seq)
LISTS_CHANGED_AFTER = compile_statement(
    select(*LIST_FEED_COLUMNS)
    .where(lists.c.user_id == _OWNER, lists.c.change_seq > _SINCE)
    .order_by(lists.c.change_seq)
    .limit(bindparam("limit"))
)
LISTS_SNAPSHOT = compile_statement(
    select(*LIST_FEED_COLUMNS)
    .where(lists.c.user_id == _OWNER, lists.c.deleted_at.is_(None), lists.c.change_seq > _SINCE)
    .order_by(lists.c.change_seq)
    .limit(bindparam("limit"))
)
