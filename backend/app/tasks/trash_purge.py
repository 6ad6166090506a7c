"""Emptying the trash of tasks trashed more than TRASH_RETENTION_DAYS ago (db/purge.py). Each
purged task leaves its tombstone in the change feed, as any purge does (migration 0005)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Interval, bindparam, delete, func, select

from app.db.database import Database
from app.db.purge import BatchPurge, Retention
from app.db.statements import compile_statement
from app.settings import Settings
from app.tasks.statements import tasks

# A task being restored or purged by its owner right now is skipped, not waited for.
_expired = (
    select(tasks.c.id)
    .where(tasks.c.deleted_at < func.now() - bindparam("retention", type_=Interval))
    .limit(bindparam("batch_size"))
    .with_for_update(skip_locked=True)
    .cte("expired")
)
_purged = delete(tasks).where(tasks.c.id == _expired.c.id).returning(tasks.c.id).cte("purged")
# The lock the change feed's tombstone purge takes too (changes/retention.py, db/purge.py).
SYNC_PURGE_LOCK_ID = 0x7A5C_0003
TRASH_RETENTION = Retention(
    name="trash",
    lock_id=SYNC_PURGE_LOCK_ID,
    batch=compile_statement(select(func.count()).select_from(_purged)),
)


def trash_purge(database: Database, settings: Settings) -> BatchPurge:
    return BatchPurge(database, TRASH_RETENTION, timedelta(days=settings.trash_retention_days))
