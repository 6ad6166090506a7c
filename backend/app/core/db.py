"""The async engine, the session factory, and the request's unit of work.

Nothing here is created at import time: the lifespan (and tests, and the CLI) build a
`Database` from settings, so each has its own engine and pool.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeAlias

import asyncpg
import structlog
from fastapi import Depends, Request
from sqlalchemy import event, exc, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.util import await_, greenlet_spawn

from app.core.config import Settings
from app.core.database_url import DatabaseTarget
from app.core.errors import translate_database_error

logger = structlog.get_logger("app.db")

# The client-side backstop fires a little after the server's statement_timeout, so a query
# on a connection whose server vanished (packets black-holed) cannot wait forever.
CLIENT_TIMEOUT_MARGIN_SECONDS = 2.0
IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_RETURNED_AT = "returned_to_pool_at"

# Generic only in asyncpg's type stubs, so a string for the runtime.
DriverConnection: TypeAlias = "asyncpg.Connection[asyncpg.Record]"


class DatabaseStartupError(Exception):
    """The database did not answer before the startup deadline; ``str()`` is safe to print."""


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4().hex}__"


def _behind_pgbouncer(settings: Settings, target: DatabaseTarget) -> bool:
    return settings.db_pgbouncer or target.pgbouncer


def create_engine(settings: Settings, target: DatabaseTarget | None = None) -> AsyncEngine:
    target = target or settings.database
    statement_timeout_ms = int(settings.db_statement_timeout_seconds * 1000)
    pgbouncer = _behind_pgbouncer(settings, target)
    server_settings = {"application_name": target.application_name or "taskapi"}
    if not pgbouncer:
        # Startup parameters; a transaction-pooling PgBouncer rejects them, so there the
        # timeout is applied per transaction instead (see _set_local_timeouts).
        server_settings["statement_timeout"] = str(statement_timeout_ms)
        server_settings["idle_in_transaction_session_timeout"] = str(IDLE_IN_TRANSACTION_TIMEOUT_MS)
    connect_args: dict[str, Any] = {
        "timeout": target.connect_timeout or settings.db_connect_timeout_seconds,
        "command_timeout": settings.db_statement_timeout_seconds + CLIENT_TIMEOUT_MARGIN_SECONDS,
        "server_settings": server_settings,
    }
    ssl_argument = target.ssl_argument()
    if ssl_argument is not None:
        connect_args["ssl"] = ssl_argument
    if pgbouncer:
        # Prepared statements do not survive PgBouncer handing the server connection to
        # another client between transactions: no cache, and never-reused statement names.
        # (statement_cache_size is asyncpg's own cache, prepared_statement_cache_size is
        # SQLAlchemy's adapter cache; both are connect() keywords, not engine options.)
        connect_args["statement_cache_size"] = 0
        connect_args["prepared_statement_cache_size"] = 0
        connect_args["prepared_statement_name_func"] = _unique_statement_name
    for warning in target.warnings:
        logger.warning("database_url_warning", detail=warning)

    # SQLAlchemy's own pre-ping on asyncpg is BEGIN; ";"; ROLLBACK: three round trips per
    # checkout. Outside PgBouncer (which is why it wraps the ping in a transaction) our own
    # check does with none on the hot path (see _check_on_checkout).
    own_check = settings.db_pool_pre_ping and not pgbouncer
    engine = create_async_engine(
        target.url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=settings.db_pool_pre_ping and pgbouncer,
        pool_recycle=settings.db_pool_recycle_seconds,
        pool_timeout=settings.db_pool_timeout_seconds,
        connect_args=connect_args,
        # Bound parameters never appear in error messages (they may hold user data).
        hide_parameters=True,
    )
    if pgbouncer:
        _set_local_timeouts(engine, statement_timeout_ms)
    if own_check:
        _check_on_checkout(
            engine,
            ping_timeout=settings.db_connect_timeout_seconds,
            ping_after_idle=settings.db_pool_pre_ping_idle_seconds,
        )
    return engine


def _check_on_checkout(engine: AsyncEngine, ping_timeout: float, ping_after_idle: float) -> None:
    """Pessimistic disconnect handling at (almost) no cost per request.

    A backend that was killed or restarted closes its socket, and asyncpg, which keeps
    reading while the connection sits in the pool, marks the connection closed: that is a
    local check. Only a connection that sat unused for longer than ``ping_after_idle`` seconds
    also gets a simple-protocol ``SELECT 1``, for the deaths no socket reports (a dropped NAT
    entry, a host gone without a FIN). Under load connections come back within milliseconds,
    so the busy pool never pings; a round trip per request was a quarter of the request.
    A connection that fails either check is discarded and the pool hands out a fresh one.
    """
    pool = engine.sync_engine.pool

    @event.listens_for(pool, "checkin")
    def _note_return(_dbapi_connection: Any, record: Any) -> None:
        record.info[_RETURNED_AT] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _check(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        driver: DriverConnection = dbapi_connection.driver_connection
        if driver.is_closed():
            raise exc.DisconnectionError("connection closed while in the pool")
        returned_at = record.info.get(_RETURNED_AT)
        if returned_at is None or time.monotonic() - returned_at <= ping_after_idle:
            return  # just opened, or used a moment ago
        try:
            await_(driver.execute("SELECT 1", timeout=ping_timeout))
        except Exception as error:
            raise exc.DisconnectionError("connection failed its pre-ping") from error


def _local_timeouts_sql(statement_timeout_ms: int) -> str:
    # One statement (asyncpg prepares every statement, and a prepared statement cannot hold
    # two commands); set_config(..., true) is SET LOCAL: it ends with the transaction, so it
    # never leaks to the next client PgBouncer hands the server connection to.
    return (
        f"SELECT set_config('statement_timeout', '{int(statement_timeout_ms)}', true), "
        "set_config('idle_in_transaction_session_timeout', "
        f"'{IDLE_IN_TRANSACTION_TIMEOUT_MS}', true)"
    )


def _set_local_timeouts(engine: AsyncEngine, statement_timeout_ms: int) -> None:
    sql = _local_timeouts_sql(statement_timeout_ms)

    @event.listens_for(engine.sync_engine, "begin")
    def _apply(connection: Any) -> None:
        connection.exec_driver_sql(sql)


@dataclass
class Database:
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    target: DatabaseTarget
    # For safe (read-only) requests: no BEGIN/COMMIT round trips. Under PostgreSQL's READ
    # COMMITTED each statement sees its own snapshot anyway, so a read loses nothing.
    read_sessionmaker: async_sessionmaker[AsyncSession]
    # First come, first served admission to the pool for driver connections (see
    # driver_connection), sized to the pool, and how long a request may wait for it.
    admission: asyncio.Semaphore
    admission_timeout_seconds: float
    # Behind PgBouncer, what each driver-level statement's transaction starts with.
    local_timeouts_sql: str | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        target = settings.database
        engine = create_engine(settings, target)
        pgbouncer = _behind_pgbouncer(settings, target)
        sessionmaker = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
        read_sessionmaker = (
            # Behind PgBouncer the statement timeout is SET LOCAL per transaction: keep one.
            sessionmaker
            if pgbouncer
            else async_sessionmaker(
                engine.execution_options(isolation_level="AUTOCOMMIT"),
                expire_on_commit=False,
                autoflush=False,
            )
        )
        return cls(
            engine=engine,
            sessionmaker=sessionmaker,
            target=target,
            read_sessionmaker=read_sessionmaker,
            local_timeouts_sql=(
                _local_timeouts_sql(int(settings.db_statement_timeout_seconds * 1000))
                if pgbouncer
                else None
            ),
            admission=asyncio.Semaphore(settings.db_pool_size + settings.db_max_overflow),
            admission_timeout_seconds=settings.db_pool_timeout_seconds,
        )

    @asynccontextmanager
    async def driver_connection(self) -> AsyncIterator[DriverConnection]:
        """A connection from the engine's pool as the asyncpg driver sees it, for the hot
        paths' hand-written statements (no ORM, no SQLAlchemy execution layer: together they
        cost more than the rest of a request).

        No transaction is open, so each statement commits on its own before it returns: a
        caller that runs one statement per operation has its unit of work done when the
        statement is. Behind PgBouncer the block is one transaction that starts by setting the
        timeouts locally, as every session transaction does there. The connection goes back to
        the pool when the block ends (discarded if the driver closed it).

        Requests queue for the pool here, in order of arrival, rather than in SQLAlchemy's
        queue: there a connection handed back wakes the longest waiter, but a request arriving
        meanwhile takes it first and the waiter queues again at the back, so under load a few
        requests starved (p99 at 50 connections 154-172 ms with a pool of 20, 41-45 ms without
        waiting). asyncio's Semaphore serves waiters strictly in order.
        """
        await self._admit()
        try:
            async with self._pooled_connection() as connection:
                yield connection
        finally:
            self.admission.release()

    async def _admit(self) -> None:
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
    async def _pooled_connection(self) -> AsyncIterator[DriverConnection]:
        try:
            pooled = await self.engine.raw_connection()
        except self.engine.dialect.loaded_dbapi.Error as error:
            # SQLAlchemy's adapter wraps connect failures; translate_database_error reads
            # the driver's own error.
            raise (error.__cause__ or error) from None
        connection: DriverConnection = pooled.driver_connection  # type: ignore[assignment]
        reusable = False
        try:
            if self.local_timeouts_sql is None:
                yield connection
            else:
                async with connection.transaction():
                    await connection.execute(self.local_timeouts_sql)
                    yield connection
            reusable = True
        except asyncpg.PostgresError as error:
            # An ERROR ends the statement and leaves the session as it was; a FATAL (the server
            # shutting down, the backend terminated) ends the session, even if the driver has
            # not yet read the socket's close. Client-side errors carry no severity.
            reusable = getattr(error, "severity", None) == "ERROR"
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
        """Round-trip ``SELECT 1``; returns the latency in milliseconds."""
        start = time.perf_counter()
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return (time.perf_counter() - start) * 1000

    async def wait_until_ready(self, deadline_seconds: float) -> None:
        """Retry ``SELECT 1`` with capped exponential backoff until it answers or time is up,
        so `docker compose up` may start the API before PostgreSQL accepts connections."""
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + deadline_seconds
        delay = 0.25
        attempt = 0
        while True:
            attempt += 1
            try:
                async with asyncio.timeout(max(0.5, give_up_at - loop.time())):
                    await self.ping()
                return
            except Exception as exc:
                where = f"{self.target.host_label}, database '{self.target.database}'"
                cause = _describe_cause(exc)
                if translate_database_error(exc) is None:
                    # Bad password, missing database...: retrying will not help.
                    raise DatabaseStartupError(
                        f"Database at {where} rejected the connection: {cause}"
                    ) from None
                remaining = give_up_at - loop.time()
                if remaining <= 0:
                    raise DatabaseStartupError(
                        f"Database unreachable at {where} after {deadline_seconds:g}s "
                        f"({attempt} attempts): {cause}"
                    ) from None
                logger.warning("database_not_ready", attempt=attempt, retry_in_s=delay)
                await asyncio.sleep(min(delay, remaining))
                delay = min(delay * 2, 5.0)

    async def dispose(self) -> None:
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


async def get_database(request: Request) -> Database:
    database: Database = request.state.database
    return database


DatabaseDep = Annotated[Database, Depends(get_database)]


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's unit of work: one transaction, committed when the route returns.

    Used with ``scope="function"`` so the commit happens before the response is sent: a
    failed commit becomes an error response, never a 2xx for a write that did not happen.
    Repositories only flush. Safe methods (GET, HEAD, OPTIONS) read without a transaction.
    """
    database: Database = request.state.database
    factory = (
        database.read_sessionmaker if request.method in SAFE_METHODS else database.sessionmaker
    )
    async with factory() as session:
        yield session
        await session.commit()


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
