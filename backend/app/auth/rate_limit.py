"""Abuse limits for credential endpoints: per client address, and per account for failed logins.

Counters live in process memory (moving windows from the `limits` library): each worker limits
on its own, so with N workers an address gets at most N times the limit. That bounds brute force,
which is the point; a shared store would be needed for exact global limits.
"""

from __future__ import annotations

import math
import time

import limits
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from app.auth.errors import RateLimitedError


class RateLimiter:
    def __init__(self, per_address: str, failures_per_account: str) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._per_address = limits.parse(per_address)
        self._failures_per_account = limits.parse(failures_per_account)

    def hit_address(self, address: str) -> None:
        """Count one attempt from ``address``; 429 once its window is full."""
        if not self._limiter.hit(self._per_address, "address", address):
            raise RateLimitedError(self._retry_after(self._per_address, "address", address))

    def hit_account(self, account: str) -> None:
        """Count one login attempt on ``account`` BEFORE the password is checked; 429 once the
        window is full. Counting first means concurrent guesses cannot all slip in while the
        first ones are still being verified. A successful login clears the count, so what
        accumulates is failures."""
        if not self._limiter.hit(self._failures_per_account, "account", account):
            raise RateLimitedError(
                self._retry_after(self._failures_per_account, "account", account)
            )

    def clear_failures(self, account: str) -> None:
        self._limiter.clear(self._failures_per_account, "account", account)

    def _retry_after(self, item: limits.RateLimitItem, *identifiers: str) -> int:
        reset_at = self._limiter.get_window_stats(item, *identifiers).reset_time
        return max(1, math.ceil(reset_at - time.time()))
