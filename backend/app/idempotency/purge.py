"""Forgetting idempotency keys past their retention: in the running service, one replica at a
time, in small batches that never hold up a write."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import cast

import structlog
from sqlalchemy import Interval, Table, and_, bindparam, delete, func, literal_column, select

from app.db.database import Database
from app.db.statements import compile_statement
from app.idempotency.models import IdempotencyKey
from app.settings import Settings

logger = structlog.get_logger("app.idempotency")

idempotency_keys = cast(Table, IdempotencyKey.__table__)
# Any constant (next to the migration lock's): the replica holding it purges, the others skip.
PURGE_LOCK_ID = 0x7A5C_0002
# Small enough that a batch takes milliseconds; a purge loops until a batch comes back short.
BATCH_SIZE = 1000

TRY_PURGE_LOCK = compile_statement(
    select(func.pg_try_advisory_xact_lock(literal_column(str(PURGE_LOCK_ID))))
)
# Rows another transaction holds (a concurrent purge, an insert racing an expired key) are
# skipped, not waited for.
_expired = (
    select(idempotency_keys.c.user_id, idempotency_keys.c.key)
    .where(idempotency_keys.c.created_at < func.now() - bindparam("retention", type_=Interval))
    .limit(bindparam("batch_size"))
    .with_for_update(skip_locked=True)
    .cte("expired")
)
PURGE_BATCH = compile_statement(
    delete(idempotency_keys).where(
        and_(
            idempotency_keys.c.user_id == _expired.c.user_id,
            idempotency_keys.c.key == _expired.c.key,
        )
    )
)


class KeyPurge:
    def __init__(self, database: Database, retention: timedelta, interval_seconds: float):
        self._database = database
        self._retention = retention
        self._interval_seconds = interval_seconds
        self._task: asyncio.Task[None] | None = None

    async def purge_batch(self) -> int | None:
        """Delete one batch of expired keys; None when another replica is purging now."""
        async with self._database.transaction() as transaction:
            if not await transaction.fetch_value(TRY_PURGE_LOCK):
                return None
            status = await transaction.execute(
                PURGE_BATCH, retention=self._retention, batch_size=BATCH_SIZE
            )
            return int(status.removeprefix("DELETE "))

    async def purge(self) -> int:
        """Batches until the expired keys are gone (or another replica holds the lock)."""
        total = 0
        while (deleted := await self.purge_batch()) is not None:
            total += deleted
            if deleted < BATCH_SIZE:
                break
        return total

    @classmethod
    def start(cls, database: Database, settings: Settings) -> KeyPurge:
        """Purge every IDEMPOTENCY_PURGE_INTERVAL_SECONDS until stopped."""
        purge = cls(
            database,
            timedelta(hours=settings.idempotency_key_retention_hours),
            settings.idempotency_purge_interval_seconds,
        )
        purge._task = asyncio.create_task(purge._run(), name="idempotency-key-purge")
        return purge

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_seconds)
            try:
                deleted = await self.purge()
            except Exception as error:  # the database may be down: try again next interval
                logger.warning("idempotency_purge_failed", error=type(error).__name__)
                continue
            if deleted:
                logger.info("idempotency_keys_purged", count=deleted)
