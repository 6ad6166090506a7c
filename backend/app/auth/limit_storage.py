"""Where the auth limits keep their counters (RATE_LIMIT_STORAGE_URL), and what they do when that
place cannot be reached.

- ``memory://`` (the default, for ``make run``): moving windows in the process's memory. Each
  worker counts on its own, so N workers give an address N times the limits.
- ``redis://``, ``rediss://`` or ``unix://`` (a production deployment): moving windows in Redis
  through the `limits` library's storage, one Lua script per operation, so every worker of
  every replica counts into the same windows.

When Redis fails (refused, timed out, an error reply), RATE_LIMIT_WHEN_UNAVAILABLE decides:
``closed`` (the default) answers the auth request 503 ``rate_limit_unavailable`` with
Retry-After, so no outage turns the limits off; ``open`` counts in the process's own windows
meanwhile, so logins go on with per-process limits. Either way Redis is left alone for
``RETRY_SECONDS`` after a failure, so an outage costs a request nothing rather than a timeout,
and nothing about it is ever a 500.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol, TypeVar, cast

import limits
import redis.asyncio
import structlog
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter as SharedMovingWindow
from limits.errors import StorageError
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter as ProcessMovingWindow
from limits.util import WindowStats
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from app.auth.errors import RateLimitUnavailableError

logger = structlog.get_logger("app.auth")

MEMORY_SCHEME = "memory"
REDIS_SCHEMES = ("redis", "rediss", "unix")
# Redis answers in well under a millisecond on a healthy network; a request waits no longer
# than this for it, once (no retries: the next request tries again after RETRY_SECONDS).
REDIS_TIMEOUT_SECONDS = 0.5
RETRY_SECONDS = 5.0
# The counters' keys, so that a Redis shared with other programs keeps them apart.
KEY_PREFIX = "taskapi:auth-limits"
# What start-up reads to see that the shared windows work.
CHECK_ITEM = limits.RateLimitItemPerSecond(1, 1)

WhenUnavailable = Literal["closed", "open"]
Result = TypeVar("Result")


class LimitWindows(Protocol):
    """The moving-window operations the auth limits use: what the `limits` strategies offer,
    awaited."""

    async def hit(self, item: limits.RateLimitItem, *identifiers: str) -> bool: ...

    async def test(self, item: limits.RateLimitItem, *identifiers: str) -> bool: ...

    async def get_window_stats(
        self, item: limits.RateLimitItem, *identifiers: str
    ) -> WindowStats: ...

    async def clear(self, item: limits.RateLimitItem, *identifiers: str) -> None: ...


class ProcessWindows:
    """Windows in this process's memory. The synchronous strategy underneath never suspends, so
    in one process each operation, and each run of operations without another await, is
    atomic."""

    def __init__(self) -> None:
        self._limiter = ProcessMovingWindow(MemoryStorage())

    async def hit(self, item: limits.RateLimitItem, *identifiers: str) -> bool:
        return self._limiter.hit(item, *identifiers)

    async def test(self, item: limits.RateLimitItem, *identifiers: str) -> bool:
        return self._limiter.test(item, *identifiers)

    async def get_window_stats(self, item: limits.RateLimitItem, *identifiers: str) -> WindowStats:
        return self._limiter.get_window_stats(item, *identifiers)

    async def clear(self, item: limits.RateLimitItem, *identifiers: str) -> None:
        self._limiter.clear(item, *identifiers)


class LimitStorage:
    """The windows every limit operation runs on: the shared ones while they answer, else what
    ``when_unavailable`` says."""

    def __init__(self, url: str, when_unavailable: WhenUnavailable) -> None:
        self._process = ProcessWindows()
        self._when_unavailable = when_unavailable
        self._pool: redis.asyncio.ConnectionPool | None = None
        self._shared: SharedMovingWindow | None = None
        self._unavailable_until = 0.0
        if url.split("://", 1)[0] in REDIS_SCHEMES:
            # One attempt per operation, bounded by the timeout: the fallback rule, not redis-py's
            # retries with backoff, decides what a failure costs.
            self._pool = redis.asyncio.ConnectionPool.from_url(
                url,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                retry=Retry(NoBackoff(), retries=0),
            )
            # wrap_exceptions makes every client error a StorageError; the `limits` options are
            # typed as scalars, though the pool is handed to redis-py as it is.
            storage = RedisStorage(
                "async+redis://",
                wrap_exceptions=True,
                implementation="redispy",
                key_prefix=KEY_PREFIX,
                connection_pool=cast(Any, self._pool),
            )
            self._shared = SharedMovingWindow(storage)

    @property
    def shared(self) -> bool:
        return self._shared is not None

    async def run(self, operation: Callable[[LimitWindows], Awaitable[Result]]) -> Result:
        """``operation`` on the shared windows, or on the process's (memory://, or Redis failing
        with ``open``); raises RateLimitUnavailableError when Redis fails with ``closed``."""
        if self._shared is None:
            return await operation(self._process)
        if time.monotonic() < self._unavailable_until:
            return await self._without_shared(operation)
        try:
            return await operation(cast(LimitWindows, self._shared))
        except StorageError as error:
            self._unavailable_until = time.monotonic() + RETRY_SECONDS
            cause = error.storage_error
            # Redis's own messages name the failure (refused, timed out, NOPERM ...), never
            # the password.
            logger.warning(
                "rate_limit_storage_unavailable",
                error=type(cause).__name__,
                reason=str(cause),
                when_unavailable=self._when_unavailable,
                retry_in_seconds=RETRY_SECONDS,
            )
            return await self._without_shared(operation)

    async def _without_shared(
        self, operation: Callable[[LimitWindows], Awaitable[Result]]
    ) -> Result:
        if self._when_unavailable == "open":
            return await operation(self._process)
        raise RateLimitUnavailableError(math.ceil(self._unavailable_until - time.monotonic()))

    async def check(self) -> str | None:
        """Why the shared windows cannot be used, or None when a window operation works (the
        scripts the limits run, not only a PING, so a role without EVALSHA shows here)."""
        if self._shared is None:
            return None
        try:
            await self._shared.get_window_stats(CHECK_ITEM, "start-up check")
        except StorageError as error:
            return f"{type(error.storage_error).__name__}: {error.storage_error}"
        return None

    async def close(self) -> None:
        """Closes Redis connections (the pool opens new ones if the app starts again)."""
        if self._pool is not None:
            await self._pool.disconnect()
