"""Emptying the trash of tasks trashed more than TRASH_RETENTION_DAYS ago (db/purge.py). Each
purged task leaves its tombstone in the change feed, as any purge does (migration 0005)."""

from __future__ import annotations

from datetime import timedelta

from app.changes.models import TASK_CHANGES_CHANNEL
from app.db.database import Database
from app.db.purge import BatchPurge, Retention, count_and_owners_of, expired_batch
from app.settings import Settings
from app.tasks.statements import tasks

# The lock the change feed's tombstone purge takes too (changes/retention.py, db/purge.py).
SYNC_PURGE_LOCK_ID = 0x7A5C_0003
TRASH_RETENTION = Retention(
    name="trash",
    lock_id=SYNC_PURGE_LOCK_ID,
    # A task its owner is restoring or purging right now is skipped, not waited for.
    batch=count_and_owners_of(
        expired_batch(tasks, tasks.c.deleted_at, [tasks.c.id, tasks.c.user_id]), "user_id"
    ),
    # The owners' open event streams read their feed (each purged task is a deletion there).
    announce_on=TASK_CHANGES_CHANNEL,
)


def trash_purge(database: Database, settings: Settings) -> BatchPurge:
    return BatchPurge(database, TRASH_RETENTION, timedelta(days=settings.trash_retention_days))
