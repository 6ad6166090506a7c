"""Forgetting tombstones older than CHANGES_RETENTION_DAYS (db/purge.py).

Updates and trashed tasks are never forgotten: each task row is its own latest change. Only a
purged task's tombstone goes, and with it the feed's memory of that deletion, so the owner's
head records the highest number pruned: a cursor below it answers 410 cursor_expired.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update

from app.changes.statements import change_heads, tombstones
from app.db.database import Database
from app.db.purge import BatchPurge, PurgeLoop, Retention, count_of, expired_batch
from app.settings import Settings
from app.tasks.trash_purge import SYNC_PURGE_LOCK_ID, trash_purge

_pruned = expired_batch(
    tombstones, tombstones.c.purged_at, [tombstones.c.user_id, tombstones.c.change_seq]
)
_through = (
    select(_pruned.c.user_id, func.max(_pruned.c.change_seq).label("seq"))
    .group_by(_pruned.c.user_id)
    .subquery("through")
)
_marked = (
    update(change_heads)
    .where(change_heads.c.user_id == _through.c.user_id)
    .values(expired_through=func.greatest(change_heads.c.expired_through, _through.c.seq))
    .cte("marked")
)
TOMBSTONE_RETENTION = Retention(
    name="change_tombstones",
    lock_id=SYNC_PURGE_LOCK_ID,
    batch=count_of(_pruned, _marked),
)


def sync_purge(database: Database, settings: Settings) -> PurgeLoop:
    """The trash's retention, then the tombstones' (whose purge the first may have added to),
    in one loop: both lock owners' change_heads rows."""
    tombstones = BatchPurge(
        database, TOMBSTONE_RETENTION, timedelta(days=settings.changes_retention_days)
    )
    return PurgeLoop(
        [trash_purge(database, settings), tombstones], settings.retention_purge_interval_seconds
    )
