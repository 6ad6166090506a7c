"""Forgetting idempotency keys past IDEMPOTENCY_KEY_RETENTION_HOURS (db/purge.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import cast

from sqlalchemy import Interval, Table, and_, bindparam, delete, func, select

from app.db.database import Database
from app.db.purge import BatchPurge, PurgeLoop, Retention
from app.db.statements import compile_statement
from app.idempotency.models import IdempotencyKey
from app.settings import Settings

idempotency_keys = cast(Table, IdempotencyKey.__table__)

# Rows another transaction holds (a concurrent purge, an insert racing an expired key) are
# skipped, not waited for.
_expired = (
    select(idempotency_keys.c.user_id, idempotency_keys.c.key)
    .where(idempotency_keys.c.created_at < func.now() - bindparam("retention", type_=Interval))
    .limit(bindparam("batch_size"))
    .with_for_update(skip_locked=True)
    .cte("expired")
)
_purged = (
    delete(idempotency_keys)
    .where(
        and_(
            idempotency_keys.c.user_id == _expired.c.user_id,
            idempotency_keys.c.key == _expired.c.key,
        )
    )
    .returning(idempotency_keys.c.key)
    .cte("purged")
)
KEY_RETENTION = Retention(
    name="idempotency_keys",
    lock_id=0x7A5C_0002,
    batch=compile_statement(select(func.count()).select_from(_purged)),
)


def key_purge(database: Database, settings: Settings) -> PurgeLoop:
    kept_for = timedelta(hours=settings.idempotency_key_retention_hours)
    return PurgeLoop(
        [BatchPurge(database, KEY_RETENTION, kept_for)],
        settings.idempotency_purge_interval_seconds,
    )
