"""`Database`: the engine's pool, lent out as asyncpg connections that run compiled statements.

The unit-of-work rule lives here, in two shapes:

- ``await database.fetch_one(statement, **values)`` (and ``fetch_all``, ``fetch_value``) runs
  one statement outside an explicit transaction: the statement is its own transaction,
  committed before the call returns.
- ``async with database.transaction() as tx:`` runs several statements on one connection in
  one transaction, committed when the block ends (so before the route answers); an exception
  inside rolls all of them back, and a failing commit raises.

Nothing commits anywhere else, and nothing after the response has started.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import asyncpg
import structlog
from sqlalchemy import event, exc, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import greenlet_spawn

from app.db.engine import (
    DriverConnection,
    behind_pgbouncer,
    create_engine,
    local_timeouts_sql,
    statement_timeout_ms,
)
from app.db.errors import READ_ONLY_SQLSTATE, DatabaseStartupError
from app.db.notifications import NotificationSender
from app.db.startup import retry_until_deadline
from app.db.statements import Statement
from app.db.url import DatabaseTarget
from app.settings import Settings

logger = structlog.get_logger("app.db")

Row = asyncpg.Record
IsolationLevel = Literal["read_committed", "repeatable_read", "serializable"]


@dataclass(frozen=True, slots=True)
class Transaction:
    """Statements run inside one open transaction on one connection (`Database.transaction`)."""

    connection: DriverConnection

    async def fetch_one(self, statement: Statement, /, **values: Any) -> Row | None:
        return await self.connection.fetchrow(statement.sql, *statement.arguments(values))

    async def fetch_all(self, statement: Statement, /, **values: Any) -> list[Row]:
        return await self.connection.fetch(statement.sql, *statement.arguments(values))

    async def fetch_value(self, statement: Statement, /, **values: Any) -> Any:
        return await self.connection.fetchval(statement.sql, *statement.arguments(values))

    async def execute(self, statement: Statement, /, **values: Any) -> str:
        return await self.connection.execute(statement.sql, *statement.arguments(values))


# When a pooled connection was opened (record.info), for _forget_pooled_sessions.
_OPENED_AT = "opened_at"


@dataclass
class Database:
    engine: AsyncEngine
    target: DatabaseTarget
    # First come, first served admission to the pool (see _admit), sized to the pool, and how
    # long a request may wait for it.
    admission: asyncio.Semaphore
    admission_timeout_seconds: float
    # Behind PgBouncer every block on a connection is a transaction that first sets the
    # timeouts locally (engine.SET_LOCAL_TIMEOUTS); None elsewhere.
    pgbouncer_timeouts_sql: str | None = None
    # Announcements of committed changes to every process's listener (db/notifications.py).
    notifications: NotificationSender = field(init=False, repr=False)

    # Pooled connections opened before this moment are discarded at their next checkout.
    _forget_before: float = field(default=float("-inf"), init=False, repr=False)

    def __post_init__(self) -> None:
        self.notifications = NotificationSender(self.fetch_value)
        pool = self.engine.sync_engine.pool
        event.listen(pool, "connect", _note_opened)
        event.listen(pool, "checkout", self._refuse_forgotten)

    def _forget_pooled_sessions(self) -> None:
        """After a write refused as read-only every pooled session is likely on a server that
        is no longer the primary: each is replaced at its next checkout (the connections in use
        too, once they are back), so the next ones find the primary
        (target_session_attrs=read-write)."""
        self._forget_before = time.monotonic()

    def _refuse_forgotten(self, _dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if record.info.get(_OPENED_AT, float("-inf")) < self._forget_before:
            # The pool reconnects this record and checks the new connection out instead.
            raise exc.DisconnectionError("opened before a read-only error")

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        target = settings.database
        return cls(
            engine=create_engine(settings, target),
            target=target,
            admission=asyncio.Semaphore(settings.db_pool_size + settings.db_max_overflow),
            admission_timeout_seconds=settings.db_pool_timeout_seconds,
            pgbouncer_timeouts_sql=(
                local_timeouts_sql(statement_timeout_ms(settings))
                if behind_pgbouncer(settings, target)
                else None
            ),
        )

    async def fetch_one(self, statement: Statement, /, **values: Any) -> Row | None:
        """Run one statement as its own transaction; its first row, if any."""
        arguments = statement.arguments(values)
        async with self.connection() as connection:
            return await connection.fetchrow(statement.sql, *arguments)

    async def fetch_all(self, statement: Statement, /, **values: Any) -> list[Row]:
        """Run one statement as its own transaction; all its rows."""
        arguments = statement.arguments(values)
        async with self.connection() as connection:
            return await connection.fetch(statement.sql, *arguments)

    async def fetch_value(self, statement: Statement, /, **values: Any) -> Any:
        """Run one statement as its own transaction; the first column of its first row."""
        arguments = statement.arguments(values)
        async with self.connection() as connection:
            return await connection.fetchval(statement.sql, *arguments)

    @asynccontextmanager
    async def transaction(
        self, *, isolation: IsolationLevel | None = None, readonly: bool = False
    ) -> AsyncIterator[Transaction]:
        """One transaction on one connection for several statements; committed when the block
        ends without an exception, rolled back otherwise. ``isolation`` and ``readonly`` go on
        its BEGIN (behind PgBouncer too, where the timeouts are set after it)."""
        async with self.connection(
            transaction=True, isolation=isolation, readonly=readonly
        ) as connection:
            yield Transaction(connection)

    @asynccontextmanager
    async def connection(
        self,
        *,
        transaction: bool = False,
        isolation: IsolationLevel | None = None,
        readonly: bool = False,
    ) -> AsyncIterator[DriverConnection]:
        """A connection from the engine's pool as the asyncpg driver sees it: the hot path runs
        compiled statements on it, without SQLAlchemy's execution layer (bench/RESULTS.md).

        Without ``transaction`` each statement commits on its own; with it the block is one
        transaction (``isolation`` and ``readonly`` apply only then). It goes back to the pool
        when the block ends (discarded if unusable).
        """
        await self._admit()
        try:
            async with self._pooled_connection(transaction, isolation, readonly) as connection:
                yield connection
        finally:
            self.admission.release()

    async def _admit(self) -> None:
        """Wait for a pool slot in order of arrival, for at most the pool timeout.

        SQLAlchemy's own queue wakes the longest waiter when a connection comes back, but a
        request arriving meanwhile takes it first and the waiter queues again at the back, so
        under load a few requests starved; asyncio's Semaphore serves waiters strictly in
        order (bench/RESULTS.md has the p99 before and after).
        """
        if not self.admission.locked():
            await self.admission.acquire()  # free: no timer to arm and cancel
            return
        try:
            async with asyncio.timeout(self.admission_timeout_seconds):
                await self.admission.acquire()
        except TimeoutError:
            # The pool's own timeout, as a checkout from it would have raised it (503).
            raise exc.TimeoutError("no pooled connection became free in time") from None

    @asynccontextmanager
    async def _pooled_connection(
        self, transaction: bool, isolation: IsolationLevel | None, readonly: bool
    ) -> AsyncIterator[DriverConnection]:
        try:
            pooled = await self.engine.raw_connection()
        except self.engine.dialect.loaded_dbapi.Error as error:
            # SQLAlchemy's adapter wraps connect failures; translate_database_error reads
            # the driver's own error.
            raise (error.__cause__ or error) from None
        connection: DriverConnection = pooled.driver_connection  # type: ignore[assignment]
        reusable = False
        try:
            if self.pgbouncer_timeouts_sql is None and not transaction:
                yield connection
            else:
                async with connection.transaction(isolation=isolation, readonly=readonly):
                    if self.pgbouncer_timeouts_sql is not None:
                        await connection.execute(self.pgbouncer_timeouts_sql)
                    yield connection
            reusable = True
        except asyncpg.PostgresError as error:
            # An ERROR ends the statement and leaves the session as it was; a FATAL (the server
            # shutting down, the backend terminated) ends the session, even if the driver has
            # not yet read the socket's close. Client-side errors carry no severity.
            reusable = getattr(error, "severity", None) == "ERROR"
            if getattr(error, "sqlstate", None) == READ_ONLY_SQLSTATE:
                reusable = False
                self._forget_pooled_sessions()
            raise
        except (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.InternalClientError):
            raise  # the connection itself failed or timed out mid-statement: not reusable
        except Exception:
            # The caller's own error (a domain error ending a transaction early): the block
            # rolled back, and a connection that is idle and open is as good as before.
            reusable = not connection.is_closed() and not connection.is_in_transaction()
            raise
        finally:
            # Anything else (cancelled or timed out mid-statement, the connection lost) leaves
            # the connection in a state nobody should inherit: closed instead of pooled.
            try:
                if not reusable or connection.is_closed():
                    await greenlet_spawn(pooled.invalidate)
            finally:
                await greenlet_spawn(pooled.close)

    async def ping(self) -> float:
        """Round-trip ``SELECT 1`` through the engine; returns the latency in milliseconds."""
        start = time.perf_counter()
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return (time.perf_counter() - start) * 1000

    async def wait_until_ready(self, deadline_seconds: float) -> None:
        """Retry ``SELECT 1`` with capped exponential backoff until it answers or time is up,
        so `docker compose up` may start the API before PostgreSQL accepts connections."""
        where = f"{self.target.host_label}, database '{self.target.database}'"

        def refused(exc: Exception) -> DatabaseStartupError:
            return DatabaseStartupError(
                f"Database at {where} rejected the connection: {_describe_cause(exc)}"
            )

        def unreachable(exc: Exception, attempts: int) -> DatabaseStartupError:
            return DatabaseStartupError(
                f"Database unreachable at {where} after {deadline_seconds:g}s "
                f"({attempts} attempts): {_describe_cause(exc)}"
            )

        await retry_until_deadline(
            self.ping,
            deadline_seconds,
            not_ready_event="database_not_ready",
            refused=refused,
            unreachable=unreachable,
        )

    async def dispose(self) -> None:
        await self.notifications.stop()
        await self.engine.dispose()


def _describe_cause(exc: BaseException) -> str:
    """The driver's exception behind SQLAlchemy's wrapper: its class, and for an error the
    server sent (e.g. 'database "x" does not exist') its message, which never holds the
    password. Other messages may quote the URL, so they are left out."""
    orig = getattr(exc, "orig", None) or exc
    driver_error = orig.__cause__ or orig
    name = type(driver_error).__name__
    if getattr(driver_error, "sqlstate", None):
        return f"{name}: {driver_error}"
    if isinstance(driver_error, ssl.SSLCertVerificationError):
        # e.g. "unable to get local issuer certificate", "Hostname mismatch, ..."
        return f"{name}: {driver_error.verify_message}"
    return name


def _note_opened(_dbapi_connection: Any, record: Any) -> None:
    record.info[_OPENED_AT] = time.monotonic()
