"""Failed logins: limited per (account, address) and delayed per account, never a lockout switch.

Each test runs its own app with the limits under test (the suite's shared app has them raised)
and sends each caller's requests from an address of its own, as uvicorn reports the peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from app.main import create_app
from app.settings import Settings
from tests.fixtures.accounts import LOGIN_URL, PASSWORD, TOKEN_URL, store_user
from tests.fixtures.app import client_at, make_settings

# Tens of seconds of argon2 and waiting: scheduled first (see conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("clean_database")]

OWNER = "10.0.0.1"
ATTACKER = "10.66.0.1"
RATE_LIMITED = {"detail": "Too many attempts; try again later", "code": "rate_limited"}


SHIPPED_LOGIN_LIMITS = {
    name: Settings.model_fields[name].default
    for name in (
        "rate_limit_login_failures_per_account_and_address",
        "rate_limit_login_failures_per_account",
    )
}


@contextlib.asynccontextmanager
async def limited_app(database_url: str, **limits: str) -> AsyncIterator[FastAPI]:
    """An app of the test's own with the shipped login limits but for ``limits``; per-address
    attempts are not under test here."""
    settings = make_settings(
        database_url,
        rate_limit_auth_per_address="1000/minute",
        **{**SHIPPED_LOGIN_LIMITS, **limits},
    )
    async with LifespanManager(create_app(settings)) as manager:
        yield manager.app  # type: ignore[misc]


async def login_from(
    app: FastAPI, address: str, email: str, password: str = PASSWORD
) -> httpx.Response:
    async with client_at(app, address) as http:
        return await http.post(LOGIN_URL, json={"email": email, "password": password})


async def guess_from(app: FastAPI, address: str, email: str) -> httpx.Response:
    return await login_from(app, address, email, password="wrong-guess")


def retry_after(response: httpx.Response) -> int:
    assert response.status_code == 429, response.text
    assert response.json() == RATE_LIMITED
    return int(response.headers["Retry-After"])


async def test_an_address_that_keeps_failing_is_refused_but_the_owner_elsewhere_logs_in(
    database_url: str, engine: AsyncEngine
) -> None:
    """The shipped limits: 5 attempts per account and address per 15 minutes."""
    victim = await store_user(engine)
    async with limited_app(database_url) as app:
        guesses = [(await guess_from(app, ATTACKER, victim.email)).status_code for _ in range(5)]

        attacker_with_the_password = await login_from(app, ATTACKER, victim.email)
        owner = await login_from(app, OWNER, victim.email)
        attacker_after_the_owner = await login_from(app, ATTACKER, victim.email)

    assert guesses == [401] * 5
    # Refused unchecked, even with the right password: that address is done for the window.
    assert 1 <= retry_after(attacker_with_the_password) <= 15 * 60
    assert owner.status_code == 200, owner.text
    assert owner.json()["user"]["id"] == str(victim.id)
    # The owner's success clears the owner's address only.
    assert retry_after(attacker_after_the_owner) >= 1


async def test_the_owner_logs_in_from_a_fresh_address_while_the_account_is_throttled(
    database_url: str, engine: AsyncEngine
) -> None:
    victim = await store_user(engine)
    async with limited_app(
        database_url, rate_limit_login_failures_per_account="2/15 minutes"
    ) as app:
        spread = [
            (await guess_from(app, f"10.66.0.{i}", victim.email)).status_code for i in range(1, 6)
        ]
        # 5 failures, 3 past the threshold: an address that has failed waits 8 seconds.
        attacker_again = await login_from(app, "10.66.0.1", victim.email)
        owner = await login_from(app, OWNER, victim.email)

    assert spread == [401] * 5
    assert retry_after(attacker_again) >= 1
    assert owner.status_code == 200, owner.text


async def test_failures_from_many_addresses_delay_each_failed_address_more_and_more(
    database_url: str, engine: AsyncEngine
) -> None:
    """Past the account's threshold (2 here) an address that has failed on the account waits
    2^(failures - threshold) seconds after its last attempt; a fresh address still gets its try."""
    victim = await store_user(engine)
    async with limited_app(
        database_url, rate_limit_login_failures_per_account="2/15 minutes"
    ) as app:
        first_attempt_at = time.monotonic()
        first = [
            (await guess_from(app, f"10.66.1.{i}", victim.email)).status_code for i in range(1, 5)
        ]
        waits: list[tuple[int, float]] = []

        async def retry_first_address() -> None:
            wait = retry_after(await guess_from(app, "10.66.1.1", victim.email))
            waits.append((wait, time.monotonic() - first_attempt_at))

        await retry_first_address()
        for fresh in ("10.66.1.5", "10.66.1.6"):
            assert (await guess_from(app, fresh, victim.email)).status_code == 401
            await retry_first_address()
        second_address = retry_after(await login_from(app, "10.66.1.2", victim.email))
        second_address_elapsed = time.monotonic() - first_attempt_at

    # Four failures: the first two reach the threshold, each fresh address is let through.
    assert first == [401, 401, 401, 401]
    # 4, 8 and 16 seconds after 10.66.1.1's one attempt, less the time taken since.
    for (wait, elapsed), delay in zip(waits, (4, 8, 16), strict=True):
        assert delay - elapsed <= wait <= delay, waits
    assert [wait for wait, _ in waits] == sorted({wait for wait, _ in waits})
    # Every address that has failed is delayed, whatever password it now sends.
    assert 16 - second_address_elapsed <= second_address <= 16


async def test_a_delayed_address_may_try_again_once_the_delay_has_passed(
    database_url: str, engine: AsyncEngine
) -> None:
    """A delay, not a lock: the owner who mistyped from their own address gets in after it."""
    victim = await store_user(engine)
    async with limited_app(
        database_url, rate_limit_login_failures_per_account="1/15 minutes"
    ) as app:
        assert (await guess_from(app, OWNER, victim.email)).status_code == 401
        assert (await guess_from(app, ATTACKER, victim.email)).status_code == 401
        wait = retry_after(await login_from(app, OWNER, victim.email))
        await asyncio.sleep(wait + 0.1)
        owner = await login_from(app, OWNER, victim.email)
        # Success forgets the owner's address: no delay for its next attempt.
        owner_again = await login_from(app, OWNER, victim.email)

    assert wait in (1, 2)  # 2^1 seconds after the owner's attempt: one failure past the threshold
    assert owner.status_code == 200, owner.text
    assert owner_again.status_code == 200, owner_again.text


async def test_a_successful_login_clears_the_failures_of_its_address(
    database_url: str, engine: AsyncEngine
) -> None:
    user = await store_user(engine)
    async with limited_app(
        database_url, rate_limit_login_failures_per_account_and_address="3/minute"
    ) as app:
        before = [(await guess_from(app, OWNER, user.email)).status_code for _ in range(2)]
        success = await login_from(app, OWNER, user.email)
        # The count restarted: three more failures are answered 401, the fourth attempt 429.
        after = [(await guess_from(app, OWNER, user.email)).status_code for _ in range(3)]
        refused = await login_from(app, OWNER, user.email)

    assert before == [401, 401]
    assert success.status_code == 200, success.text
    assert after == [401, 401, 401]
    assert retry_after(refused) >= 1


async def test_the_token_route_shares_the_limits_of_login(
    database_url: str, engine: AsyncEngine
) -> None:
    user = await store_user(engine)
    async with limited_app(
        database_url, rate_limit_login_failures_per_account_and_address="2/minute"
    ) as app:
        async with client_at(app, ATTACKER) as http:
            form = {"username": user.email, "password": "wrong-guess"}
            statuses = [(await http.post(TOKEN_URL, data=form)).status_code for _ in range(2)]
        refused = await guess_from(app, ATTACKER, user.email)

    assert statuses == [401, 401]
    assert retry_after(refused) >= 1


async def test_concurrent_guesses_cannot_exceed_the_limit_of_their_address(
    database_url: str, engine: AsyncEngine
) -> None:
    """Attempts are counted before the (slow) password check, so guesses sent all at once
    do not all slip in while the first ones are still being verified."""
    user = await store_user(engine)
    async with (
        limited_app(
            database_url, rate_limit_login_failures_per_account_and_address="3/minute"
        ) as app,
        client_at(app, ATTACKER) as http,
    ):
        guesses = [
            http.post(LOGIN_URL, json={"email": user.email, "password": f"guess-{i:04d}"})
            for i in range(5)
        ]
        statuses = sorted(r.status_code for r in await asyncio.gather(*guesses))

    assert statuses == [401, 401, 401, 429, 429]


async def test_concurrent_guesses_from_a_fresh_address_get_one_try_while_throttled(
    database_url: str, engine: AsyncEngine
) -> None:
    """The delay also counts before the password check: a burst from an address that has not
    failed yet gets its one try, and the rest wait as a failed address does."""
    user = await store_user(engine)
    async with limited_app(
        database_url, rate_limit_login_failures_per_account="1/15 minutes"
    ) as app:
        # Two failures, one past the threshold: an address that has tried waits 2 seconds.
        for address in ("10.66.2.1", "10.66.2.2"):
            assert (await guess_from(app, address, user.email)).status_code == 401
        async with client_at(app, "10.66.2.3") as http:
            guesses = [
                http.post(LOGIN_URL, json={"email": user.email, "password": f"guess-{i:04d}"})
                for i in range(5)
            ]
            statuses = sorted(r.status_code for r in await asyncio.gather(*guesses))

    assert statuses == [401, 429, 429, 429, 429]


async def test_an_unknown_email_is_limited_like_an_account(
    database_url: str,
) -> None:
    """The same answers whether the email has an account: 429s reveal no more than 401s."""
    nobody = "nobody-here@example.com"
    async with limited_app(
        database_url, rate_limit_login_failures_per_account_and_address="2/minute"
    ) as app:
        statuses = [(await guess_from(app, ATTACKER, nobody)).status_code for _ in range(2)]
        refused = await guess_from(app, ATTACKER, nobody)
        elsewhere = await guess_from(app, OWNER, nobody)

    assert statuses == [401, 401]
    assert retry_after(refused) >= 1
    assert elsewhere.status_code == 401


async def test_the_addresses_of_one_ipv6_64_count_as_one_address(
    database_url: str, engine: AsyncEngine
) -> None:
    """A host given a /64 can send every attempt from a new address; the /64 is what counts."""
    user = await store_user(engine)
    async with limited_app(
        database_url, rate_limit_login_failures_per_account_and_address="2/minute"
    ) as app:
        statuses = [
            (await guess_from(app, address, user.email)).status_code
            for address in ("2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:fffe")
        ]
        same_64 = await login_from(app, "2001:db8:1:2:abcd::9", user.email)
        next_64 = await login_from(app, "2001:db8:1:3::1", user.email)

    assert statuses == [401, 401]
    assert retry_after(same_64) >= 1
    assert next_64.status_code == 200, next_64.text
