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
in. An IPv6 address counts as its /64, which one host commonly has to itself. The counters are
moving windows of the `limits` library, in the process or in Redis (limit_storage.py). Each
count that can refuse is one atomic hit, so concurrent attempts never exceed a limit, across
processes too. The delay's check of an address's last attempt and its reset are two operations:
one process runs them for one login per account and address at a time; two processes could each
admit one attempt from the same address in the same few milliseconds, which the
per-(account, address) limit still bounds. The counters' keys hold keyed hashes of the email and
the address, never the values.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import math
import time
import weakref
from dataclasses import dataclass
from typing import Literal

import limits

from app.auth.limit_storage import LimitStorage, LimitWindows
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
        storage: LimitStorage,
        pseudonym_key: bytes,
    ) -> None:
        self._storage = storage
        self._pseudonym_key = pseudonym_key
        # One login at a time per (account, address) in this process through the delay's
        # check-then-reset, which is not one atomic operation on a shared storage (see the
        # module's docstring); a lock lives as long as a login holds it.
        self._login_locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
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
            LimitStorage(
                settings.rate_limit_storage_url.get_secret_value(),
                settings.rate_limit_when_unavailable,
            ),
            pseudonym_key(settings),
        )

    @property
    def storage(self) -> LimitStorage:
        return self._storage

    async def hit_address(self, address: str) -> Refusal | None:
        """Count one signup or login attempt from ``address``, unless its window is full."""
        address = self.pseudonym(limited_address(address))

        async def hit(windows: LimitWindows) -> Refusal | None:
            if await windows.hit(self._per_address, "address", address):
                return None
            retry_after = await _retry_after(windows, self._per_address, "address", address)
            return Refusal("address", retry_after)

        return await self._storage.run(hit)

    async def begin_login(self, account: str, address: str) -> Refusal | None:
        """Count a login attempt on ``account`` from ``address`` BEFORE the password is checked,
        or refuse it. Counting first means concurrent guesses cannot all slip in while the
        first ones are still being verified."""
        account, address = self.pseudonym(account), self.pseudonym(limited_address(address))
        attempts = ("login-attempts", account, address)
        last = ("login-last-attempt", account, address)

        async def begin(windows: LimitWindows) -> Refusal | None:
            # The address's own limit first: its wait is the longer one to report.
            if not await windows.test(self._per_account_and_address, *attempts):
                return await self._address_refused(windows, attempts)
            delay = await self._delay(windows, account)
            if delay is not None:
                stats = await windows.get_window_stats(self._last_attempt, *last)
                if stats.remaining == 0:  # this address has tried the account, not got in since
                    wait = stats.reset_time - self._max_delay + delay - time.time()
                    if wait > 0:
                        return Refusal("account", math.ceil(wait))
            # The count itself is one atomic hit: of attempts racing past the test above, only
            # as many as the window holds get through.
            if not await windows.hit(self._per_account_and_address, *attempts):
                return await self._address_refused(windows, attempts)
            await windows.clear(self._last_attempt, *last)
            await windows.hit(self._last_attempt, *last)
            return None

        lock = self._login_locks.setdefault((account, address), asyncio.Lock())
        async with lock:
            return await self._storage.run(begin)

    async def _address_refused(
        self, windows: LimitWindows, attempts: tuple[str, str, str]
    ) -> Refusal:
        retry_after = await _retry_after(windows, self._per_account_and_address, *attempts)
        return Refusal("account_and_address", retry_after)

    def pseudonym(self, identifier: str) -> str:
        return pseudonym(self._pseudonym_key, identifier)

    async def login_failed(self, account: str) -> None:
        account = self.pseudonym(account)

        async def fail(windows: LimitWindows) -> None:
            await windows.hit(self._account_failures, "login-failures", account)

        await self._storage.run(fail)

    async def login_succeeded(self, account: str, address: str) -> None:
        """Forget this address's attempts on the account. The account's failures stay: the owner
        logging in does not hand an attacker elsewhere a fresh run of undelayed guesses."""
        account, address = self.pseudonym(account), self.pseudonym(limited_address(address))

        async def succeed(windows: LimitWindows) -> None:
            await windows.clear(self._per_account_and_address, "login-attempts", account, address)
            await windows.clear(self._last_attempt, "login-last-attempt", account, address)

        await self._storage.run(succeed)

    async def _delay(self, windows: LimitWindows, account: str) -> float | None:
        """How long an address that has failed on ``account`` must wait after its last attempt,
        or None while the account's failures are below the threshold."""
        stats = await windows.get_window_stats(self._account_failures, "login-failures", account)
        failures = self._account_failures.amount - stats.remaining
        if failures < self._delay_threshold:
            return None
        return min(FIRST_DELAY_SECONDS * 2.0 ** (failures - self._delay_threshold), self._max_delay)


async def _retry_after(windows: LimitWindows, item: limits.RateLimitItem, *identifiers: str) -> int:
    reset_at = (await windows.get_window_stats(item, *identifiers)).reset_time
    return max(1, math.ceil(reset_at - time.time()))


def pseudonym_key(settings: Settings) -> bytes:
    """The key of the counters' pseudonyms, derived from JWT_SECRET (which every replica shares)
    and used for nothing else."""
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else ""
    return hashlib.sha256(b"taskapi auth-limit keys\0" + secret.encode()).digest()


def pseudonym(key: bytes, identifier: str) -> str:
    """What the counters' keys hold instead of an email or an address: a keyed hash, so a
    shared Redis lists no one's email or address."""
    return hmac.new(key, identifier.encode(), hashlib.sha256).hexdigest()[:32]


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
