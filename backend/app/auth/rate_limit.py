"""Abuse limits for the credential endpoints, built so that no one can lock an account out.

- Every signup and login attempt counts against the client address (``per_address``).
- Login attempts on one account from one address are limited
  (``failures_per_account_and_address``): an address that keeps failing on an account is
  refused, even with the right password, but only that address, so knowing someone's email is
  not enough to lock them out.
- Failures on one account from every address turn on a delay once they reach the threshold of
  ``failures_per_account``: an address that has failed on the account must wait
  ``FIRST_DELAY_SECONDS`` doubled for each failure past the threshold (at most the window) after
  its last attempt. An address with no failure on the account is never delayed, so the owner
  can always try their password; an attacker with many addresses is slowed to about one guess
  per address per window once the delay has grown to the window.

Attempts are counted before the password is checked, and forgotten for an address when it logs
in. An IPv6 address counts as its /64, which one host commonly has to itself. Counters live in
process memory (moving windows from the `limits` library): each worker limits on its own, so
with N workers an address gets at most N times the limits. Only the strategy's
hit/test/get_window_stats/clear are used, so a shared `limits` storage can replace the memory
one unchanged.
"""

from __future__ import annotations

import ipaddress
import math
import time
from dataclasses import dataclass
from typing import Literal

import limits
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from app.settings import Settings

FIRST_DELAY_SECONDS = 1
IPV6_PREFIX_LENGTH = 64

Limit = Literal["address", "account_and_address", "account"]


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an attempt was refused unchecked, and how long the caller should wait."""

    limit: Limit
    retry_after: int


class RateLimiter:
    def __init__(
        self,
        per_address: str,
        failures_per_account_and_address: str,
        failures_per_account: str,
    ) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._per_address = limits.parse(per_address)
        self._per_account_and_address = limits.parse(failures_per_account_and_address)
        account = limits.parse(failures_per_account)
        self._delay_threshold = account.amount
        self._max_delay = account.get_expiry()
        # Counting stops once the delay has reached the window: further failures change nothing.
        doublings = math.ceil(math.log2(max(self._max_delay / FIRST_DELAY_SECONDS, 1))) + 1
        self._account_failures = limits.RateLimitItemPerSecond(
            account.amount + doublings, self._max_delay
        )
        # One entry per (account, address): when that address last tried that account.
        self._last_attempt = limits.RateLimitItemPerSecond(1, self._max_delay)

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter:
        return cls(
            settings.rate_limit_auth_per_address,
            settings.rate_limit_login_failures_per_account_and_address,
            settings.rate_limit_login_failures_per_account,
        )

    def hit_address(self, address: str) -> Refusal | None:
        """Count one signup or login attempt from ``address``, unless its window is full."""
        address = limited_address(address)
        if self._limiter.hit(self._per_address, "address", address):
            return None
        return Refusal("address", self._retry_after(self._per_address, "address", address))

    def begin_login(self, account: str, address: str) -> Refusal | None:
        """Count a login attempt on ``account`` from ``address`` BEFORE the password is checked,
        or refuse it. Counting first means concurrent guesses cannot all slip in while the
        first ones are still being verified (so nothing here may await)."""
        address = limited_address(address)
        attempts = ("login-attempts", account, address)
        if not self._limiter.test(self._per_account_and_address, *attempts):
            retry_after = self._retry_after(self._per_account_and_address, *attempts)
            return Refusal("account_and_address", retry_after)
        last = ("login-last-attempt", account, address)
        delay = self._delay(account)
        if delay is not None:
            stats = self._limiter.get_window_stats(self._last_attempt, *last)
            if stats.remaining == 0:  # this address has tried the account and not got in since
                wait = stats.reset_time - self._max_delay + delay - time.time()
                if wait > 0:
                    return Refusal("account", math.ceil(wait))
        self._limiter.hit(self._per_account_and_address, *attempts)
        self._limiter.clear(self._last_attempt, *last)
        self._limiter.hit(self._last_attempt, *last)
        return None

    def login_failed(self, account: str) -> None:
        self._limiter.hit(self._account_failures, "login-failures", account)

    def login_succeeded(self, account: str, address: str) -> None:
        """Forget this address's attempts on the account. The account's failures stay: the owner
        logging in does not hand an attacker elsewhere a fresh run of undelayed guesses."""
        address = limited_address(address)
        self._limiter.clear(self._per_account_and_address, "login-attempts", account, address)
        self._limiter.clear(self._last_attempt, "login-last-attempt", account, address)

    def _delay(self, account: str) -> float | None:
        """How long an address that has failed on ``account`` must wait after its last attempt,
        or None while the account's failures are below the threshold."""
        stats = self._limiter.get_window_stats(self._account_failures, "login-failures", account)
        failures = self._account_failures.amount - stats.remaining
        if failures < self._delay_threshold:
            return None
        return min(FIRST_DELAY_SECONDS * 2.0 ** (failures - self._delay_threshold), self._max_delay)

    def _retry_after(self, item: limits.RateLimitItem, *identifiers: str) -> int:
        reset_at = self._limiter.get_window_stats(item, *identifiers).reset_time
        return max(1, math.ceil(reset_at - time.time()))


def limited_address(address: str) -> str:
    """What the limits count for a client address: an IPv6 address's /64 network, since a host
    that can pick any address in its /64 could otherwise start afresh with every attempt."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # not an address ("unknown", a unix socket): counted as it is
    if isinstance(ip, ipaddress.IPv4Address):
        return address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((ip, IPV6_PREFIX_LENGTH), strict=False))
