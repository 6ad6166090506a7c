"""Waiting for the database at start-up: `docker compose up` may start the API before
PostgreSQL accepts connections, so start-up retries with capped exponential backoff until a
deadline, and an error that retrying cannot fix (a refused login, a missing database) ends the
wait at once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from app.db.errors import DatabaseStartupError, translate_database_error

logger = structlog.get_logger("app.db")

T = TypeVar("T")
FIRST_RETRY_SECONDS = 0.25
MAX_RETRY_SECONDS = 5.0
# Even the last attempt before the deadline gets this long.
MIN_ATTEMPT_SECONDS = 0.5


async def retry_until_deadline(
    attempt: Callable[[], Awaitable[T]],
    deadline_seconds: float,
    *,
    not_ready_event: str,
    refused: Callable[[Exception], DatabaseStartupError],
    unreachable: Callable[[Exception, int], DatabaseStartupError],
    keep_refusal_cause: bool = False,
) -> tuple[T, int]:
    """``attempt``'s result and how many attempts it took. Raises ``refused(error)`` at once
    for an error that is not an outage (with the error as its cause if
    ``keep_refusal_cause``: a bug's traceback is worth keeping, a bad password's is not), and
    ``unreachable(last error, attempts)`` once the deadline has passed; logs
    ``not_ready_event`` before each retry."""
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + deadline_seconds
    delay = FIRST_RETRY_SECONDS
    attempts = 0
    while True:
        attempts += 1
        try:
            async with asyncio.timeout(max(MIN_ATTEMPT_SECONDS, give_up_at - loop.time())):
                return await attempt(), attempts
        except Exception as exc:
            if translate_database_error(exc) is None:
                raise refused(exc) from (exc if keep_refusal_cause else None)
            remaining = give_up_at - loop.time()
            if remaining <= 0:
                raise unreachable(exc, attempts) from None
            logger.warning(not_ready_event, attempt=attempts, retry_in_s=delay)
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, MAX_RETRY_SECONDS)
