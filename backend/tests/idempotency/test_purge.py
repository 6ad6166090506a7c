"""Forgetting Idempotency-Keys past their retention (issue 15): the purge deletes the expired
keys in batches, one replica at a time, and never holds up a write."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
from asgi_lifespan import LifespanManager
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.database import Database
from app.db.purge import BATCH_SIZE, BatchPurge
from app.idempotency.purge import KEY_RETENTION, key_purge
from app.main import create_app
from tests.fixtures.accounts import Account, StoredUser
from tests.fixtures.app import make_settings
from tests.fixtures.tasks import REPLAYED, key_count, key_row, user_task_count

RETENTION = timedelta(hours=1)
# Younger than the 24 hours the session's app keeps keys, so its own purge leaves them alone.
EXPIRED = timedelta(hours=2)
TIMEOUT_SECONDS = 30


async def insert_keys(
    engine: AsyncEngine, user_id: uuid.UUID, prefix: str, count: int, age: timedelta
) -> None:
    """``count`` stored keys of ``user_id`` named ``prefix1``, ``prefix2``..., ``age`` old."""
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO idempotency_keys "
                "(user_id, key, fingerprint, status, body, created_at) "
                "SELECT :user_id, :prefix || n, '\\x00'::bytea, 204, NULL, "
                "now() - make_interval(secs => :age) FROM generate_series(1, :count) AS n"
            ),
            {"user_id": user_id, "prefix": prefix, "count": count, "age": age.total_seconds()},
        )


async def key_names(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        return set((await connection.execute(text("SELECT key FROM idempotency_keys"))).scalars())


async def age_key(engine: AsyncEngine, key: str, age: timedelta) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE idempotency_keys SET created_at = now() - make_interval(secs => :age) "
                "WHERE key = :key"
            ),
            {"key": key, "age": age.total_seconds()},
        )


@asynccontextmanager
async def holding_purge_lock(engine: AsyncEngine) -> AsyncIterator[None]:
    """Another replica purging: the purge lock held in an open transaction."""
    async with engine.connect() as connection, connection.begin() as transaction:
        await connection.execute(text(f"SELECT pg_advisory_xact_lock({KEY_RETENTION.lock_id})"))
        try:
            yield
        finally:
            await transaction.rollback()


def purge_of(database: Database) -> BatchPurge:
    return BatchPurge(database, KEY_RETENTION, RETENTION)


async def test_purge_deletes_the_keys_past_retention_and_keeps_the_others(
    engine: AsyncEngine, database: Database, stored_user: StoredUser
) -> None:
    await insert_keys(engine, stored_user.id, "old", 5, EXPIRED)
    await insert_keys(engine, stored_user.id, "almost", 3, RETENTION - timedelta(minutes=5))
    await insert_keys(engine, stored_user.id, "new", 4, timedelta(0))

    deleted = await purge_of(database).purge()

    assert deleted == 5
    assert await key_names(engine) == {f"almost{n}" for n in range(1, 4)} | {
        f"new{n}" for n in range(1, 5)
    }


async def test_purge_with_nothing_expired_deletes_nothing(
    engine: AsyncEngine, database: Database, stored_user: StoredUser
) -> None:
    await insert_keys(engine, stored_user.id, "new", 3, timedelta(minutes=1))

    assert await purge_of(database).purge() == 0
    assert await key_count(engine) == 3


async def test_one_batch_deletes_at_most_batch_size_keys(
    engine: AsyncEngine, database: Database, stored_user: StoredUser
) -> None:
    await insert_keys(engine, stored_user.id, "old", BATCH_SIZE + 7, EXPIRED)
    purge = purge_of(database)

    first = await purge.purge_batch()

    assert first == BATCH_SIZE
    assert await key_count(engine) == 7
    assert await purge.purge_batch() == 7
    assert await key_count(engine) == 0


async def test_purge_runs_batches_until_every_expired_key_is_gone(
    engine: AsyncEngine, database: Database, stored_user: StoredUser
) -> None:
    expired = 2 * BATCH_SIZE + 13
    await insert_keys(engine, stored_user.id, "old", expired, EXPIRED)
    await insert_keys(engine, stored_user.id, "new", 2, timedelta(0))

    deleted = await purge_of(database).purge()

    assert deleted == expired
    assert await key_names(engine) == {"new1", "new2"}


async def test_purge_skips_while_another_replica_holds_the_purge_lock(
    engine: AsyncEngine, database: Database, stored_user: StoredUser
) -> None:
    await insert_keys(engine, stored_user.id, "old", 3, EXPIRED)
    purge = purge_of(database)

    async with holding_purge_lock(engine), asyncio.timeout(TIMEOUT_SECONDS):
        skipped_batch = await purge.purge_batch()
        skipped = await purge.purge()
        assert await key_count(engine) == 3

    assert skipped_batch is None
    assert skipped == 0
    assert await purge.purge() == 3
    assert await key_count(engine) == 0


async def test_two_replicas_purging_at_once_delete_each_key_once(
    engine: AsyncEngine, database: Database, stored_user: StoredUser
) -> None:
    expired = BATCH_SIZE + 100
    await insert_keys(engine, stored_user.id, "old", expired, EXPIRED)

    async with asyncio.timeout(TIMEOUT_SECONDS):
        counts = await asyncio.gather(*(purge_of(database).purge() for _ in range(2)))

    assert sum(counts) == expired
    assert await key_count(engine) == 0


async def test_purge_skips_an_expired_key_another_transaction_holds_instead_of_waiting(
    engine: AsyncEngine, database: Database, stored_user: StoredUser
) -> None:
    await insert_keys(engine, stored_user.id, "old", 3, EXPIRED)

    async with engine.connect() as connection, connection.begin() as transaction:
        await connection.execute(
            text("SELECT 1 FROM idempotency_keys WHERE key = 'old2' FOR UPDATE")
        )
        async with asyncio.timeout(TIMEOUT_SECONDS):
            deleted = await purge_of(database).purge()
        await transaction.rollback()

    assert deleted == 2
    assert await key_names(engine) == {"old2"}


async def test_an_open_purge_holds_up_neither_a_new_keyed_write_nor_a_retry_of_a_purged_key(
    client: httpx.AsyncClient, logged_in: Account, engine: AsyncEngine, database: Database
) -> None:
    headers = {**logged_in.headers, "Idempotency-Key": "expiring"}
    first = await client.post(logged_in.tasks_url, json={"title": "kept"}, headers=headers)
    assert first.status_code == 201, first.text
    await age_key(engine, "expiring", EXPIRED)

    async with database.transaction() as purge:
        assert await purge.fetch_value(KEY_RETENTION.try_lock) is True
        deleted = await purge.fetch_value(
            KEY_RETENTION.batch, retention=RETENTION, batch_size=BATCH_SIZE
        )
        assert deleted == 1
        # The purge's transaction is open, holding the deleted key's row and the purge lock.
        async with asyncio.timeout(TIMEOUT_SECONDS):
            fresh = await client.post(
                logged_in.tasks_url,
                json={"title": "new"},
                headers={**logged_in.headers, "Idempotency-Key": "fresh"},
            )
            retry = await client.post(logged_in.tasks_url, json={"title": "kept"}, headers=headers)

    assert fresh.status_code == 201, fresh.text
    assert REPLAYED not in fresh.headers
    # The purge had not committed: the retry still found the key and replayed.
    assert retry.status_code == 201, retry.text
    assert retry.headers[REPLAYED] == "true"
    assert retry.content == first.content
    assert await user_task_count(engine, logged_in.id) == 2
    assert await key_row(engine, logged_in.id, "expiring") is None
    assert await key_row(engine, logged_in.id, "fresh") is not None


async def test_the_running_service_purges_expired_keys(
    engine: AsyncEngine, database_url: str, stored_user: StoredUser
) -> None:
    await insert_keys(engine, stored_user.id, "old", 4, EXPIRED)
    await insert_keys(engine, stored_user.id, "new", 2, timedelta(0))
    settings = make_settings(
        database_url,
        idempotency_key_retention_hours=RETENTION.total_seconds() / 3600,
        idempotency_purge_interval_seconds=0.05,
    )

    async with LifespanManager(create_app(settings)), asyncio.timeout(TIMEOUT_SECONDS):
        while await key_count(engine) > 2:  # noqa: ASYNC110  (the purge signals nothing)
            await asyncio.sleep(0.05)

    assert await key_names(engine) == {"new1", "new2"}


async def test_a_stopped_purge_purges_no_more(
    engine: AsyncEngine, database: Database, stored_user: StoredUser
) -> None:
    interval = 0.05
    purge = key_purge(
        database,
        make_settings(
            "postgresql://unused/unused",
            idempotency_key_retention_hours=1,
            idempotency_purge_interval_seconds=interval,
        ),
    ).start()
    await purge.stop()
    await insert_keys(engine, stored_user.id, "old", 2, EXPIRED)

    await asyncio.sleep(interval * 5)

    assert await key_count(engine) == 2
