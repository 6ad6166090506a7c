"""Load-balancer probes: /health (liveness) and /health/db (readiness)."""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import Annotated, Literal

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from app import __version__
from app.db.database import Database
from app.db.deps import DatabaseDep
from app.db.errors import RETRY_AFTER_SECONDS, DatabaseUnavailableError
from app.db.notifications import NotificationListener
from app.http.errors import ERROR_HEADERS, ErrorCode

router = APIRouter(tags=["health"])
logger = structlog.get_logger("app.health")

# A probe must answer within 2 s even when the database host black-holes packets, and on a
# busy process too: the rest of the 2 s is the event loop's margin (1.5 s left too little with
# both CPUs saturated: 2.0-2.25 s measured).
LIVENESS_DB_TIMEOUT_SECONDS = 1.0
READINESS_TIMEOUT_SECONDS = 1.2


class DatabaseConnection(StrEnum):
    """Named, so generated clients get this name rather than one they make up."""

    CONNECTED = "connected"
    DISCONNECTED = "disconnected"


class Liveness(BaseModel):
    status: Literal["ok"]
    version: str
    database: DatabaseConnection


class Readiness(BaseModel):
    status: Literal["ok"]
    database: str
    latency_ms: float


class NotReady(BaseModel):
    status: Literal["unavailable"]
    database: str
    detail: str
    code: ErrorCode


# Probes given up on, still cleaning up; referenced so they are not garbage-collected.
_abandoned_probes: set[asyncio.Task[float]] = set()


async def _round_trip(database: Database, budget_seconds: float) -> float | None:
    # The ping runs in its own task and the probe waits for it through a shield: when the budget
    # runs out the answer goes out at once, while the cancelled ping finishes in the background.
    # Awaiting the cancellation would not do: SQLAlchemy then closes the dead connection
    # gracefully, which on a black-holed host waits up to 2 s more.
    ping = asyncio.create_task(database.ping())
    try:
        async with asyncio.timeout(budget_seconds):
            return await asyncio.shield(ping)
    except Exception as exc:
        logger.warning("health_check_failed", error_type=type(exc).__name__)
        return None
    finally:
        if not ping.done():
            ping.cancel()
            _abandoned_probes.add(ping)
            ping.add_done_callback(_forget_probe)


def _forget_probe(ping: asyncio.Task[float]) -> None:
    _abandoned_probes.discard(ping)
    if not ping.cancelled():
        ping.exception()  # retrieved, so asyncio does not report it as never retrieved


@router.get("/health")
async def liveness(database: DatabaseDep) -> Liveness:
    """The process is up. Never fails because the database is down; reports it instead."""
    latency = await _round_trip(database, LIVENESS_DB_TIMEOUT_SECONDS)
    return Liveness(
        status="ok",
        version=__version__,
        database=DatabaseConnection.CONNECTED
        if latency is not None
        else DatabaseConnection.DISCONNECTED,
    )


async def get_listener(request: Request) -> NotificationListener:
    """The lifespan's notification listener (main.py)."""
    listener: NotificationListener = request.state.listener
    return listener


@router.get(
    "/health/db",
    response_model=Readiness,
    responses={
        503: {
            "model": NotReady,
            "description": "The database did not answer, or this process has not been listening "
            "for ended sessions for 10 s",
            "headers": ERROR_HEADERS[503],
        }
    },
)
async def readiness(
    database: DatabaseDep, listener: Annotated[NotificationListener, Depends(get_listener)]
) -> Readiness | JSONResponse:
    """Ready to serve: a query round-trips to the database within the probe's budget, and
    the process has not been without its notification listener for long."""
    database_name = database.target.database
    latency = await _round_trip(database, READINESS_TIMEOUT_SECONDS)
    if latency is None:
        return _not_ready(database_name, "The database did not answer")
    if listener.lost_too_long():
        return _not_ready(database_name, "Not listening for ended sessions and task changes")
    return Readiness(status="ok", database=database_name, latency_ms=round(latency, 2))


def _not_ready(database_name: str, detail: str) -> JSONResponse:
    body = NotReady(
        status="unavailable",
        database=database_name,
        detail=detail,
        code=DatabaseUnavailableError.code,
    )
    return JSONResponse(
        body.model_dump(), status_code=503, headers={"Retry-After": RETRY_AFTER_SECONDS}
    )
