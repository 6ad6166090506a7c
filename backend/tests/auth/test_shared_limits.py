"""The auth limits kept in Redis (RATE_LIMIT_STORAGE_URL=redis://...): apps that share one Redis
enforce one limit, and a Redis that fails is handled by RATE_LIMIT_WHEN_UNAVAILABLE, never with
a 500.

Each app here is what one worker process holds (its own limiter, pool and event loop state);
the same across real server processes is in reliability/test_replicas.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth import limit_storage
from app.auth.rate_limit import pseudonym, pseudonym_key
from app.main import create_app
from tests.fixtures.accounts import LOGIN_URL, SIGNUP_URL, store_user
from tests.fixtures.app import client_at, make_settings
from tests.fixtures.logs import LogOutput
from tests.fixtures.processes import free_port
from tests.fixtures.redis import unique_address
from tests.fixtures.tcp_proxy import running_proxy

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("clean_database")]

RATE_LIMITED = {"detail": "Too many attempts; try again later", "code": "rate_limited"}
UNAVAILABLE = {
    "detail": "Sign-in is briefly unavailable; try again shortly",
    "code": "rate_limit_unavailable",
}


@contextlib.asynccontextmanager
async def limited_app(
    database_url: str, storage_url: str, **overrides: str
) -> AsyncIterator[FastAPI]:
    settings = make_settings(database_url, rate_limit_storage_url=storage_url, **overrides)
    async with LifespanManager(create_app(settings)) as manager:
        yield manager.app  # type: ignore[misc]


@contextlib.asynccontextmanager
async def two_workers(
    database_url: str, storage_url: str, **overrides: str
) -> AsyncIterator[tuple[FastAPI, FastAPI]]:
    """Two apps with the same settings and storage, as two worker processes are."""
    async with (
        limited_app(database_url, storage_url, **overrides) as first,
        limited_app(database_url, storage_url, **overrides) as second,
    ):
        yield first, second


async def guess(app: FastAPI, address: str, email: str) -> httpx.Response:
    async with client_at(app, address) as http:
        return await http.post(LOGIN_URL, json={"email": email, "password": "wrong-guess"})


async def limit_keys(redis_url: str, fragment: str) -> list[bytes]:
    """The service's counters in Redis whose key contains ``fragment``."""
    async with redis.asyncio.Redis.from_url(redis_url) as client:
        pattern = f"{limit_storage.KEY_PREFIX}*{fragment}*"
        return [key async for key in client.scan_iter(match=pattern)]


def pseudonym_of(database_url: str, identifier: str) -> str:
    """What the test apps' counters call ``identifier`` (their JWT_SECRET keys the hash)."""
    return pseudonym(pseudonym_key(make_settings(database_url)), identifier)


async def test_two_workers_on_one_redis_enforce_one_limit_per_address(
    database_url: str, redis_url: str
) -> None:
    address = unique_address()
    async with two_workers(database_url, redis_url, rate_limit_auth_per_address="4/minute") as (
        first,
        second,
    ):
        answers = []
        for app in (first, second, first, second, first, second):
            async with client_at(app, address) as http:
                answers.append(await http.post(SIGNUP_URL, json={"email": "not-an-email"}))

    # Four attempts in the window between both workers, not four each.
    assert [r.status_code for r in answers] == [422, 422, 422, 422, 429, 429]
    assert answers[-1].json() == RATE_LIMITED
    assert 1 <= int(answers[-1].headers["Retry-After"]) <= 60
    # The counters are in Redis, under the service's prefix, keyed by the address's pseudonym;
    # the address itself appears in no key.
    assert await limit_keys(redis_url, pseudonym_of(database_url, address))
    assert await limit_keys(redis_url, address) == []


async def test_concurrent_guesses_through_two_workers_cannot_exceed_the_limit(
    database_url: str, redis_url: str, engine: AsyncEngine
) -> None:
    """Each count that can refuse is one atomic operation in Redis, so guesses racing through
    different workers do not all slip in."""
    user = await store_user(engine)
    address = unique_address()
    async with two_workers(
        database_url, redis_url, rate_limit_login_failures_per_account_and_address="3/minute"
    ) as (first, second):
        statuses = sorted(
            r.status_code
            for r in await asyncio.gather(
                *(guess(app, address, user.email) for app in (first, second) * 4)
            )
        )

    assert statuses == [401, 401, 401, 429, 429, 429, 429, 429]
    # The keys name the account by a keyed hash: a shared Redis lists no one's email.
    assert await limit_keys(redis_url, user.email) == []


async def test_failures_through_one_worker_delay_the_account_on_another(
    database_url: str, redis_url: str, engine: AsyncEngine
) -> None:
    user = await store_user(engine)
    attacker = unique_address()
    async with two_workers(
        database_url, redis_url, rate_limit_login_failures_per_account="1/15 minutes"
    ) as (first, second):
        assert (await guess(first, attacker, user.email)).status_code == 401
        # Three failures, two past the threshold: the attacker waits 4 s after its attempt.
        assert (await guess(first, unique_address(), user.email)).status_code == 401
        assert (await guess(second, unique_address(), user.email)).status_code == 401
        # The account is past its threshold: the failed address waits, whichever worker it asks.
        refused = await guess(second, attacker, user.email)

    assert refused.status_code == 429, refused.text
    assert refused.json() == RATE_LIMITED


@pytest.mark.parametrize("when_unavailable", ["closed", "open"])
async def test_an_unreachable_redis_is_refused_or_let_through_by_the_rule_never_a_500(
    database_url: str, engine: AsyncEngine, log_output: LogOutput, when_unavailable: str
) -> None:
    user = await store_user(engine)
    nothing_listens = f"redis://127.0.0.1:{free_port()}/0"
    async with (
        limited_app(
            database_url,
            nothing_listens,
            rate_limit_when_unavailable=when_unavailable,
            rate_limit_auth_per_address="3/minute",
        ) as app,
        client_at(app, unique_address()) as http,
    ):
        answers = [
            await http.post(LOGIN_URL, json={"email": user.email, "password": "wrong"})
            for _ in range(4)
        ]

    statuses = [r.status_code for r in answers]
    if when_unavailable == "closed":
        assert statuses == [503, 503, 503, 503]
        assert answers[0].json() == UNAVAILABLE
        assert 1 <= int(answers[0].headers["Retry-After"]) <= limit_storage.RETRY_SECONDS
    else:
        # Limited all the same, by the process's own windows.
        assert statuses == [401, 401, 401, 429]
    failures = log_output.records(event="rate_limit_storage_unavailable")
    # Logged once per outage, not per request: the storage is left alone for RETRY_SECONDS.
    assert len(failures) == 1
    assert failures[0]["when_unavailable"] == when_unavailable
    assert "Traceback" not in log_output.text


async def test_a_redis_that_never_answers_costs_a_request_the_timeout_once(
    database_url: str, redis_url: str
) -> None:
    async with running_proxy(redis_url) as proxy:
        proxy.black_hole()
        async with (
            limited_app(database_url, proxy.url) as app,
            client_at(app, unique_address()) as http,
        ):
            started = time.monotonic()
            first = await http.post(SIGNUP_URL, json={"email": "not-an-email"})
            first_took = time.monotonic() - started
            started = time.monotonic()
            second = await http.post(SIGNUP_URL, json={"email": "not-an-email"})
            second_took = time.monotonic() - started

    assert (first.status_code, second.status_code) == (503, 503)
    assert (
        limit_storage.REDIS_TIMEOUT_SECONDS
        <= first_took
        < limit_storage.REDIS_TIMEOUT_SECONDS + 1.5
    )
    # Within the retry interval the storage is not asked again.
    assert second_took < limit_storage.REDIS_TIMEOUT_SECONDS


async def test_limits_are_shared_again_once_redis_is_back(
    database_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limit_storage, "RETRY_SECONDS", 0.5)
    address = unique_address()
    async with (
        running_proxy(redis_url) as proxy,
        limited_app(database_url, proxy.url, rate_limit_auth_per_address="2/minute") as app,
        client_at(app, address) as http,
    ):
        await proxy.refuse()
        down = await http.post(SIGNUP_URL, json={"email": "not-an-email"})
        await proxy.forward()
        await asyncio.sleep(0.6)
        back = [(await http.post(SIGNUP_URL, json={"email": "x"})).status_code for _ in range(3)]

    assert down.status_code == 503
    assert back == [422, 422, 429]
    assert await limit_keys(redis_url, pseudonym_of(database_url, address))
