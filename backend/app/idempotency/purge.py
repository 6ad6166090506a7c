"""Forgetting idempotency keys past IDEMPOTENCY_KEY_RETENTION_HOURS (db/purge.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import cast

from sqlalchemy import Table

from app.db.database import Database
from app.db.purge import BatchPurge, PurgeLoop, Retention, count_of, expired_batch
from app.idempotency.models import IdempotencyKey
from app.settings import Settings

idempotency_keys = cast(Table, IdempotencyKey.__table__)

KEY_PURGE_LOCK_ID = 0x7A5C_0002

KEY_RETENTION = Retention(
    name="idempotency_keys",
    lock_id=KEY_PURGE_LOCK_ID,
    batch=count_of(
        expired_batch(
            idempotency_keys,
            idempotency_keys.c.created_at,
            [idempotency_keys.c.user_id, idempotency_keys.c.key],
        )
    ),
)


def key_purge(database: Database, settings: Settings) -> PurgeLoop:
    kept_for = timedelta(hours=settings.idempotency_key_retention_hours)
    return PurgeLoop(
        [BatchPurge(database, KEY_RETENTION, kept_for)],
        settings.idempotency_purge_interval_seconds,
    )
