"""The unit-of-work rule: one statement is one transaction; `Database.transaction()` makes
several statements one transaction on one connection, committed when the block ends."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from sqlalchemy import bindparam, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.statements import users
from app.db.database import Database
from app.db.errors import translate_database_error
from app.db.statements import compile_statement
from app.http.errors import ErrorCode
from tests.fixtures.app import make_settings

ADD_USER = compile_statement(
    insert(users)
    .values(email=bindparam("email"), password_hash=bindparam("password_hash"))
    .returning(users.c.id)
)
SHOW_TIMEOUTS = compile_statement(
    select(
        text("current_setting('statement_timeout')"),
        text("current_setting('idle_in_transaction_session_timeout')"),
    )
)


async def _emails(engine: AsyncEngine) -> list[str]:
    """What is committed, seen from a connection of the test's own."""
    async with engine.connect() as connection:
        return list(
            (await connection.scalars(text("SELECT email FROM users ORDER BY email"))).all()
        )


async def _add_in_one_transaction(
    database: Database, *emails: str, then_raise: Exception | None = None
) -> None:
    async with database.transaction() as tx:
        for email in emails:
            await tx.execute(ADD_USER, email=email, password_hash="h")
        if then_raise is not None:
            raise then_raise


async def test_a_single_statement_is_committed_when_the_call_returns(
    database: Database, engine: AsyncEngine, clean_database: None
) -> None:
    await database.fetch_one(ADD_USER, email="one@x.io", password_hash="h")

    assert await _emails(engine) == ["one@x.io"]


async def test_statements_in_a_transaction_are_committed_together_when_the_block_ends(
    database: Database, engine: AsyncEngine, clean_database: None
) -> None:
    async with database.transaction() as tx:
        first = await tx.fetch_value(ADD_USER, email="a@x.io", password_hash="h")
        rows = await tx.fetch_all(ADD_USER, email="b@x.io", password_hash="h")
        seen_inside = await _emails(engine)

    assert isinstance(first, uuid.UUID)
    assert len(rows) == 1
    assert seen_inside == []  # nothing visible to others before the commit
    assert await _emails(engine) == ["a@x.io", "b@x.io"]


async def test_an_exception_in_the_block_rolls_back_every_statement(
    database: Database, engine: AsyncEngine, clean_database: None
) -> None:
    with pytest.raises(RuntimeError, match="changed my mind"):
        await _add_in_one_transaction(
            database, "a@x.io", "b@x.io", then_raise=RuntimeError("changed my mind")
        )

    assert await _emails(engine) == []


async def test_the_connection_survives_an_error_of_the_callers_own(
    database_url: str, engine: AsyncEngine, clean_database: None
) -> None:
    """A domain error that ends a transaction early rolls it back; the connection, idle and
    open, goes back to the pool instead of being closed and replaced."""
    database = Database.from_settings(make_settings(database_url, db_pool_size=1))
    try:
        async with database.connection() as connection:
            first_pid = await connection.fetchval("SELECT pg_backend_pid()")
        with pytest.raises(LookupError):
            await _add_in_one_transaction(database, "a@x.io", then_raise=LookupError("no"))
        async with database.connection() as connection:
            second_pid = await connection.fetchval("SELECT pg_backend_pid()")
    finally:
        await database.dispose()

    assert second_pid == first_pid
    assert await _emails(engine) == []


async def test_a_failing_statement_rolls_back_the_ones_before_it(
    database: Database, engine: AsyncEngine, clean_database: None
) -> None:
    with pytest.raises(Exception, match="duplicate key"):
        await _add_in_one_transaction(database, "a@x.io", "a@x.io")

    assert await _emails(engine) == []
    # The connection went back to the pool usable: the next unit of work succeeds.
    await database.fetch_one(ADD_USER, email="after@x.io", password_hash="h")
    assert await _emails(engine) == ["after@x.io"]


async def test_a_failing_commit_raises_and_keeps_nothing(
    database: Database, engine: AsyncEngine, clean_database: None
) -> None:
    # A deferred constraint trigger runs at COMMIT, after both INSERTs succeeded.
    async with engine.begin() as connection:
        await connection.exec_driver_sql(
            "CREATE FUNCTION test_refuse_users() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN IF NEW.email = 'refused@x.io' THEN RAISE EXCEPTION 'refused at commit'; "
            "END IF; RETURN NULL; END $$"
        )
        await connection.exec_driver_sql(
            "CREATE CONSTRAINT TRIGGER test_refuse_users AFTER INSERT ON users "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_refuse_users()"
        )
    try:
        with pytest.raises(Exception, match="refused at commit"):
            await _add_in_one_transaction(database, "fine@x.io", "refused@x.io")
    finally:
        async with engine.begin() as connection:
            await connection.exec_driver_sql("DROP TRIGGER test_refuse_users ON users")
            await connection.exec_driver_sql("DROP FUNCTION test_refuse_users()")

    assert await _emails(engine) == []


async def test_behind_pgbouncer_every_block_sets_the_timeouts_locally(database_url: str) -> None:
    url = make_url(database_url).update_query_dict({"pgbouncer": "true"})
    settings = make_settings(
        url.render_as_string(hide_password=False), db_statement_timeout_seconds=3
    )
    database = Database.from_settings(settings)
    try:
        single = await database.fetch_one(SHOW_TIMEOUTS)
        async with database.transaction() as tx:
            inside = await tx.fetch_one(SHOW_TIMEOUTS)
        # SET LOCAL ended with each transaction: the session itself kept the server default.
        async with database.connection() as connection:
            await connection.execute("SET statement_timeout = 0")  # autocommits outside
            after = await connection.fetchval("SHOW statement_timeout")
    finally:
        await database.dispose()

    assert single is not None
    assert inside is not None
    assert tuple(single) == tuple(inside) == ("3s", "1min")
    assert after == "0"


async def test_a_deadlock_victim_is_a_503_to_retry_and_its_connection_is_reused(
    database: Database, engine: AsyncEngine
) -> None:
    """Two transactions lock two rows in opposite orders: PostgreSQL rolls one back (40P01).
    That one's request is a 503 with Retry-After (nothing of it happened), not a 500."""
    async with engine.begin() as connection:
        await connection.execute(text("DROP TABLE IF EXISTS deadlock_probe"))
        await connection.execute(text("CREATE TABLE deadlock_probe (id int PRIMARY KEY)"))
        await connection.execute(text("INSERT INTO deadlock_probe VALUES (1), (2)"))
    lock = "UPDATE deadlock_probe SET id = id WHERE id = $1"
    first_locked, second_locked = asyncio.Event(), asyncio.Event()

    async def locker(first: int, second: int, mine: asyncio.Event, theirs: asyncio.Event) -> None:
        async with database.transaction() as transaction:
            await transaction.connection.execute(lock, first)
            mine.set()
            await theirs.wait()
            await transaction.connection.execute(lock, second)

    try:
        outcomes = await asyncio.wait_for(
            asyncio.gather(
                locker(1, 2, first_locked, second_locked),
                locker(2, 1, second_locked, first_locked),
                return_exceptions=True,
            ),
            timeout=10,
        )
        failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        assert len(failures) == 1, outcomes
        assert isinstance(failures[0], asyncpg.DeadlockDetectedError)
        error = translate_database_error(failures[0])
        assert error is not None
        assert (error.status_code, error.code) == (503, ErrorCode.DATABASE_UNAVAILABLE)
        assert error.headers["Retry-After"]
        # The victim's connection went back to the pool and still works.
        assert await database.fetch_value(compile_statement(select(1))) == 1
    finally:
        async with engine.begin() as connection:
            await connection.execute(text("DROP TABLE deadlock_probe"))
