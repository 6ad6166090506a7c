"""Forgetting rows past their retention, in the running service: one replica at a time, in small
batches that never hold up a write.

Each kind of row (idempotency keys, the trash, the feed's tombstones) is a `Retention`: a
statement that deletes one batch and counts it, and the advisory lock that makes one replica
purge it while the others skip the round.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import structlog
from sqlalchemy import (
    Column,
    Interval,
    Table,
    Text,
    bindparam,
    delete,
    distinct,
    func,
    literal_column,
    select,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.sql.selectable import CTE

from app.db.database import Database
from app.db.statements import Statement, compile_statement

logger = structlog.get_logger("app.db")

# Small enough that a batch takes milliseconds; a purge loops until a batch comes back short.
BATCH_SIZE = 1000


def expired_batch(table: Table, aged_by: Column[object], keys: Sequence[Column[object]]) -> CTE:
    """A DELETE of at most ``:batch_size`` rows of ``table`` whose ``aged_by`` is older than
    ``:retention`` (an interval), returning their ``keys``. Rows another transaction holds (an
    owner's own write, a concurrent purge) are skipped, not waited for."""
    expired = (
        select(*keys)
        .where(aged_by < func.now() - bindparam("retention", type_=Interval))
        .limit(bindparam("batch_size"))
        .with_for_update(skip_locked=True)
        .cte("expired")
    )
    return (
        delete(table)
        .where(*(key == expired.c[key.name] for key in keys))
        .returning(*keys)
        .cte("purged")
    )


def count_of(purged: CTE, *also: CTE) -> Statement:
    """A retention's batch: run ``purged`` (and the statements ``also`` need done with it) and
    count the rows it deleted."""
    return compile_statement(select(func.count()).select_from(purged).add_cte(*also))


def count_and_owners_of(purged: CTE, owner: str) -> Statement:
    """A retention's batch that announces: count the rows ``purged`` deleted, and name their
    distinct owners (the ``owner`` column, as text: the announcement's key)."""
    owners = func.array_agg(distinct(sql_cast(purged.c[owner], Text)))
    return compile_statement(select(func.count(), owners).select_from(purged))


@dataclass(frozen=True)
class Retention:
    """``batch`` deletes at most ``:batch_size`` rows older than ``:retention`` (an interval),
    skipping rows another transaction holds, and selects how many it deleted. ``lock_id`` is
    any constant of its own, next to the migration lock's."""

    name: str
    lock_id: int
    batch: Statement
    # A channel told the owners of the rows a batch deleted, when the rows are something its
    # listeners show (the trash: its purged tasks are deletions in the feed); the batch is then
    # count_and_owners_of's.
    announce_on: str | None = None
    try_lock: Statement = field(init=False)

    def __post_init__(self) -> None:
        lock = select(func.pg_try_advisory_xact_lock(literal_column(str(self.lock_id))))
        object.__setattr__(self, "try_lock", compile_statement(lock))


class BatchPurge:
    def __init__(self, database: Database, retention: Retention, kept_for: timedelta) -> None:
        self._database = database
        self._retention = retention
        self._kept_for = kept_for

    @property
    def name(self) -> str:
        return self._retention.name

    async def purge_batch(self) -> int | None:
        """Delete one batch; None when another replica is purging now."""
        async with self._database.transaction() as transaction:
            if not await transaction.fetch_value(self._retention.try_lock):
                return None
            batch = await transaction.fetch_one(
                self._retention.batch, retention=self._kept_for, batch_size=BATCH_SIZE
            )
        assert batch is not None  # an aggregate: one row
        channel = self._retention.announce_on
        if channel is not None:
            for owner in batch[1] or ():
                self._database.notifications.send(channel, owner)
        return int(batch[0])

    async def purge(self) -> int:
        """Batches until the expired rows are gone (or another replica holds the lock)."""
        total = 0
        while (deleted := await self.purge_batch()) is not None:
            total += deleted
            if deleted < BATCH_SIZE:
                break
        return total


class PurgeLoop:
    """Runs its purges one after the other every ``interval_seconds`` until stopped. Purges
    that lock the same rows (the trash's and the tombstones' both lock owners' change_heads
    rows) belong in one loop and share one advisory lock, so that they never run at once and
    deadlock each other, in one process or across replicas."""

    def __init__(self, purges: Sequence[BatchPurge], interval_seconds: float) -> None:
        self._purges = tuple(purges)
        self._interval_seconds = interval_seconds
        self._task: asyncio.Task[None] | None = None

    def start(self) -> PurgeLoop:
        names = "+".join(purge.name for purge in self._purges)
        self._task = asyncio.create_task(self._run(), name=f"purge-{names}")
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_seconds)
            for purge in self._purges:
                try:
                    deleted = await purge.purge()
                except Exception as error:  # the database may be down: try next interval
                    logger.warning("purge_failed", rows=purge.name, error=type(error).__name__)
                    continue
                if deleted:
                    logger.info("purged", rows=purge.name, count=deleted)
