"""Database failures as the client sees them: driver and pool errors translated at the data
boundary into `AppError`s (an outage is 503 with Retry-After, never a 500)."""

from __future__ import annotations

import ssl

import asyncpg
from sqlalchemy import exc as sa_exc

from app.http.errors import AppError, ErrorCode

RETRY_AFTER_SECONDS = "5"


class DatabaseUnavailableError(AppError):
    status_code = 503
    code = ErrorCode.DATABASE_UNAVAILABLE
    message = "The database is unavailable; retry shortly"

    def __init__(self, message: str | None = None):
        super().__init__(message, headers={"Retry-After": RETRY_AFTER_SECONDS})


class DatabaseTimeoutError(DatabaseUnavailableError):
    code = ErrorCode.DATABASE_TIMEOUT
    message = "The database did not answer in time; retry shortly"


class DatabaseStartupError(Exception):
    """The database did not answer before the startup deadline; ``str()`` is safe to print."""


# What the handlers catch to ask translate_database_error; anything it declines is a 500.
DATABASE_ERROR_TYPES: tuple[type[Exception], ...] = (
    sa_exc.DBAPIError,
    sa_exc.TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
)


# read_only_sql_transaction: a write reached a standby or a primary being demoted.
READ_ONLY_SQLSTATE = "25006"


def translate_database_error(exc: BaseException) -> AppError | None:
    """Map a driver/pool failure to the error a client should see, or None if it is not one.

    Connection-level failures (refused, reset, timed out, pool exhausted, server shutting down)
    mean "try again"; they are never a 500. Takes SQLAlchemy's wrapped errors (the engine's
    connections) and asyncpg's own (statements on the driver connection) alike.
    """
    if isinstance(exc, sa_exc.TimeoutError):  # pool checkout timed out
        return DatabaseUnavailableError("The database is busy; retry shortly")
    if isinstance(exc, sa_exc.DBAPIError):
        # The adapter's error (orig) wraps asyncpg's own, which carries the SQLSTATE.
        orig = exc.orig
        translated = _translate_driver_error((orig.__cause__ or orig) if orig else exc)
        if translated is None and (
            exc.connection_invalidated
            or isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError)
        ):
            return DatabaseUnavailableError()
        return translated
    return _translate_driver_error(exc)


def _translate_driver_error(exc: BaseException) -> AppError | None:
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate == "57014" or isinstance(exc, TimeoutError):  # query_canceled; 3.11+ asyncio's
        return DatabaseTimeoutError()
    if sqlstate in ("40001", "40P01"):
        # A serialization failure or a deadlock: the server rolled the whole transaction back,
        # so nothing of it happened and the same request may simply be sent again.
        return DatabaseUnavailableError(
            "The database gave way to a concurrent request; retry shortly"
        )
    if sqlstate == READ_ONLY_SQLSTATE:
        # Connected to a server that is not (or no longer) the primary: a switchover, or a
        # URL without target_session_attrs=read-write. The pool is replaced (database.py,
        # engine.py), so the retry connects afresh and finds the primary.
        return DatabaseUnavailableError("The database is read-only at the moment; retry shortly")
    if type(exc) is asyncpg.InterfaceError:  # "connection is closed"; not its subclasses,
        return DatabaseUnavailableError()  # which are client configuration or argument errors
    if isinstance(exc, asyncpg.InternalClientError):
        # A connection the server was closing as it was lent out (its FATAL read, its EOF
        # not yet): the statement was never sent, and the connection is discarded.
        return DatabaseUnavailableError()
    if sqlstate and sqlstate[:2] in ("08", "53", "57"):  # connection, resources, shutdown
        return DatabaseUnavailableError()
    if isinstance(exc, ssl.SSLCertVerificationError):
        # The server's certificate (or its name) is not trusted: configuration, not an
        # outage. Retrying will not fix it, so it must not hide behind "retry shortly".
        return None
    if isinstance(exc, OSError):  # ConnectionRefusedError, socket.gaierror, ... on connect
        return DatabaseUnavailableError()
    return None
