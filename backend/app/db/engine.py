"""The async engine: its pool, connect arguments, and the checks and timeouts on each checkout.

Nothing is created at import time: `Database.from_settings` (and the CLI, tests, the bench)
build an engine from settings, so each has its own pool.
"""

from __future__ import annotations

import ssl
import time
import uuid
from typing import Any, TypeAlias

import asyncpg
import structlog
from sqlalchemy import Text, bindparam, event, exc, func, literal_column, select, true
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.util import await_

from app.db.errors import READ_ONLY_SQLSTATE
from app.db.statements import render_constant
from app.db.url import DatabaseTarget
from app.settings import Settings

logger = structlog.get_logger("app.db")

# Generic only in asyncpg's type stubs, so a string for the runtime.
DriverConnection: TypeAlias = "asyncpg.Connection[asyncpg.Record]"

# The client-side backstop fires a little after the server's statement_timeout, so a query
# on a connection whose server vanished (packets black-holed) cannot wait forever.
CLIENT_TIMEOUT_MARGIN_SECONDS = 2.0
IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000
_RETURNED_AT = "returned_to_pool_at"

# Behind a transaction-pooling PgBouncer the timeouts cannot be startup parameters: each
# transaction sets them locally (set_config(..., true) is SET LOCAL, which ends with the
# transaction and never leaks to the next client of the server connection). One statement,
# because a prepared statement cannot hold two commands.
SET_LOCAL_TIMEOUTS = select(
    func.set_config(
        literal_column("'statement_timeout'"), bindparam("statement_timeout", type_=Text), true()
    ),
    func.set_config(
        literal_column("'idle_in_transaction_session_timeout'"),
        bindparam("idle_timeout", type_=Text),
        true(),
    ),
)


def local_timeouts_sql(timeout_ms: int) -> str:
    """SET_LOCAL_TIMEOUTS with the configured values written in (see render_constant)."""
    return render_constant(
        SET_LOCAL_TIMEOUTS.params(
            statement_timeout=str(timeout_ms), idle_timeout=str(IDLE_IN_TRANSACTION_TIMEOUT_MS)
        )
    )


def behind_pgbouncer(settings: Settings, target: DatabaseTarget) -> bool:
    return settings.db_pgbouncer or target.pgbouncer


def statement_timeout_ms(settings: Settings) -> int:
    return int(settings.db_statement_timeout_seconds * 1000)


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4().hex}__"


def driver_connect_arguments(
    settings: Settings, target: DatabaseTarget, *, pgbouncer: bool
) -> dict[str, Any]:
    """The keywords of ``asyncpg.connect`` every connection to ``target`` gets, pooled or not:
    the connect and client-side timeouts, TLS, application_name and the server settings."""
    timeout_ms = statement_timeout_ms(settings)
    server_settings = {"application_name": target.application_name or "taskapi"}
    if not pgbouncer:
        # Startup parameters; a transaction-pooling PgBouncer rejects them (SET_LOCAL_TIMEOUTS).
        server_settings["statement_timeout"] = str(timeout_ms)
        server_settings["idle_in_transaction_session_timeout"] = str(IDLE_IN_TRANSACTION_TIMEOUT_MS)
    arguments: dict[str, Any] = {
        "timeout": target.connect_timeout or settings.db_connect_timeout_seconds,
        "command_timeout": settings.db_statement_timeout_seconds + CLIENT_TIMEOUT_MARGIN_SECONDS,
        "server_settings": server_settings,
    }
    ssl_argument = target.ssl_argument()
    if ssl_argument is not None:
        arguments["ssl"] = ssl_argument
    if pgbouncer:
        # Prepared statements do not survive PgBouncer handing the server connection to
        # another client between transactions: no asyncpg statement cache (create_engine
        # turns SQLAlchemy's off too).
        arguments["statement_cache_size"] = 0
    return arguments


OUTSIDE_POOL_SUFFIX = "-listener"
# Connection failures that send a host list on to its next host, as libpq does: the host does
# not answer or refuses, is starting up or shutting down, has no room, or is not what
# target_session_attrs asks for. Anything else (a password, pg_hba, a missing database, a
# certificate) is a configuration error, raised at once as with a single host.
_NEXT_HOST_SQLSTATE_CLASSES = ("08", "53", "57")


def _next_host_may_do_better(error: BaseException) -> bool:
    if isinstance(error, ssl.SSLCertVerificationError):
        return False
    if isinstance(error, OSError | TimeoutError | asyncpg.TargetServerAttributeNotMatched):
        return True
    sqlstate = getattr(error, "sqlstate", None) or ""
    return sqlstate[:2] in _NEXT_HOST_SQLSTATE_CLASSES


async def connect_host_by_host(*args: Any, **kwargs: Any) -> DriverConnection:
    """``asyncpg.connect``, but a host list (``h1:p1,h2:p2`` for failover) is tried one host at
    a time, each with the whole connect timeout. asyncpg spends one timeout on the whole list and
    moves on only from a host that refuses, so a primary that silently drops packets would use
    it up and leave the standby untried; libpq gives each host its connect_timeout. A list that
    prefers standbys (prefer-standby) is left to asyncpg, which ranks the hosts it reached."""
    hosts = kwargs.get("host")
    preference = kwargs.get("target_session_attrs")
    if not isinstance(hosts, list) or len(hosts) < 2 or preference == "prefer-standby":
        return await asyncpg.connect(*args, **kwargs)
    failure: BaseException | None = None
    # SQLAlchemy gives a host list a port list of the same length (5432 filled in by db/url.py).
    for host, port in zip(hosts, kwargs["port"], strict=True):
        try:
            return await asyncpg.connect(*args, **{**kwargs, "host": host, "port": port})
        except Exception as error:
            if not _next_host_may_do_better(error):
                raise
            failure = error
    assert failure is not None  # a list of two or more hosts was tried
    raise failure


async def connect_outside_pool(settings: Settings, target: DatabaseTarget) -> DriverConnection:
    """One asyncpg connection made as the pool makes its own, but taking no slot of it: for a
    session that lives as long as the process (LISTEN), which a pool would count and recycle.

    Plain asyncpg rather than a NullPool engine: such a session needs no SQLAlchemy adapter or
    dialect initialisation, only the same address (read from the URL by the engine's dialect)
    and the same keywords (driver_connect_arguments).
    """
    # DB_PGBOUNCER speaks of DATABASE_URL only; another target (DATABASE_LISTEN_URL) is
    # behind PgBouncer only if its own URL says so.
    shares_the_pool_target = settings.database_url is not None and target == settings.database
    pgbouncer = target.pgbouncer or (settings.db_pgbouncer and shares_the_pool_target)
    dialect = PGDialect_asyncpg()  # type: ignore[no-untyped-call]
    _, address = dialect.create_connect_args(target.url)  # type: ignore[no-untyped-call]
    arguments = driver_connect_arguments(settings, target, pgbouncer=pgbouncer)
    if target.application_name is None or shares_the_pool_target:
        # Told apart from the pool's sessions in pg_stat_activity (and by the tests that count
        # those): "<the pool's name>-listener". A DATABASE_LISTEN_URL's own name is kept.
        base = target.application_name or "taskapi"
        arguments["server_settings"]["application_name"] = f"{base}{OUTSIDE_POOL_SUFFIX}"
    return await connect_host_by_host(**address, **arguments)


def create_engine(settings: Settings, target: DatabaseTarget | None = None) -> AsyncEngine:
    target = target or settings.database
    timeout_ms = statement_timeout_ms(settings)
    pgbouncer = behind_pgbouncer(settings, target)
    connect_args = driver_connect_arguments(settings, target, pgbouncer=pgbouncer)
    connect_args["async_creator_fn"] = connect_host_by_host
    if pgbouncer:
        # And never-reused statement names. (statement_cache_size is asyncpg's own cache,
        # prepared_statement_cache_size is SQLAlchemy's adapter cache; both are connect()
        # keywords, not engine options.)
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
        _set_local_timeouts(engine, timeout_ms)
    if own_check:
        _check_on_checkout(
            engine,
            ping_timeout=settings.db_connect_timeout_seconds,
            ping_after_idle=settings.db_pool_pre_ping_idle_seconds,
        )
    _reconnect_after_read_only_errors(engine)
    return engine


def _check_on_checkout(engine: AsyncEngine, ping_timeout: float, ping_after_idle: float) -> None:
    """Pessimistic disconnect handling at (almost) no cost per request.

    A backend that was killed or restarted closes its socket, and asyncpg, which keeps
    reading while the connection sits in the pool, marks the connection closed: that is a
    local check. Only a connection that sat unused for longer than ``ping_after_idle`` seconds
    also gets a simple-protocol ``SELECT 1``, for the deaths no socket reports (a dropped NAT
    entry, a host gone without a FIN). Under load connections come back within milliseconds,
    so the busy pool never pings (a round trip per request is costly: bench/RESULTS.md).
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


def _reconnect_after_read_only_errors(engine: AsyncEngine) -> None:
    """A write refused as read-only (READ_ONLY_SQLSTATE: the server is a standby, or a primary
    being demoted) counts as a disconnect, so SQLAlchemy discards the pool's connections and
    the next ones find the primary."""

    @event.listens_for(engine.sync_engine, "handle_error")
    def _read_only(context: ExceptionContext) -> None:
        original = context.original_exception
        cause = getattr(original, "__cause__", None) or original
        if getattr(cause, "sqlstate", None) == READ_ONLY_SQLSTATE:
            context.is_disconnect = True


def _set_local_timeouts(engine: AsyncEngine, timeout_ms: int) -> None:
    sql = local_timeouts_sql(timeout_ms)

    @event.listens_for(engine.sync_engine, "begin")
    def _apply(connection: Any) -> None:
        connection.exec_driver_sql(sql)
