"""Abuse limits on signup and login (own app: the suite's shared app has them raised)."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager

from app.main import create_app
from tests.fixtures.accounts import PASSWORD
from tests.fixtures.app import make_settings

# Tens of seconds of real processes or waiting: scheduled first (see conftest.py).
pytestmark = pytest.mark.slow


@pytest.fixture
async def limited_client(
    database_url: str, clean_database: None
) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(
        database_url,
        rate_limit_auth_per_address="6/minute",
        rate_limit_login_failures_per_account="3/minute",
    )
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


async def _login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/api/auth/login", json={"email": email, "password": password})


async def test_failed_logins_lock_the_account_with_retry_after(
    limited_client: httpx.AsyncClient,
) -> None:
    signup = await limited_client.post(
        "/api/auth/signup", json={"email": "victim@example.com", "password": PASSWORD}
    )
    assert signup.status_code == 201
    for _ in range(3):
        assert (
            await _login(limited_client, "victim@example.com", "wrong-guess")
        ).status_code == 401

    locked = await _login(limited_client, "VICTIM@example.com", PASSWORD)

    assert locked.status_code == 429
    assert locked.json() == {"detail": "Too many attempts; try again later", "code": "rate_limited"}
    assert 1 <= int(locked.headers["Retry-After"]) <= 60


async def test_concurrent_guesses_cannot_exceed_the_account_limit(
    limited_client: httpx.AsyncClient,
) -> None:
    """Attempts are counted before the (slow) password check, so guesses sent all at once
    do not all slip in while the first ones are still being verified."""
    await limited_client.post(
        "/api/auth/signup", json={"email": "burst@example.com", "password": PASSWORD}
    )
    guesses = [
        limited_client.post(
            "/api/auth/login",
            json={"email": "burst@example.com", "password": f"guess-{i:04d}"},
        )
        for i in range(5)
    ]
    statuses = sorted(response.status_code for response in await asyncio.gather(*guesses))

    # 3 failures are allowed per window; the 4th and 5th are refused unchecked.
    assert statuses == [401, 401, 401, 429, 429]


async def test_successful_login_clears_the_failure_count(limited_client: httpx.AsyncClient) -> None:
    await limited_client.post(
        "/api/auth/signup", json={"email": "forgetful@example.com", "password": PASSWORD}
    )
    for _ in range(2):
        assert (
            await _login(limited_client, "forgetful@example.com", "nope-nope")
        ).status_code == 401
    assert (await _login(limited_client, "forgetful@example.com", PASSWORD)).status_code == 200

    # The counter restarted: two more failures are still answered 401, not 429.
    for _ in range(2):
        assert (
            await _login(limited_client, "forgetful@example.com", "nope-nope")
        ).status_code == 401


async def test_attempts_per_client_address_are_limited(limited_client: httpx.AsyncClient) -> None:
    statuses = [
        (await _login(limited_client, f"nobody{i}@example.com", "whatever1")).status_code
        for i in range(6)
    ]
    assert statuses == [401] * 6

    over = await limited_client.post(
        "/api/auth/signup", json={"email": "late@example.com", "password": PASSWORD}
    )

    assert over.status_code == 429
    assert over.json()["code"] == "rate_limited"
    assert int(over.headers["Retry-After"]) >= 1


async def test_password_hashing_does_not_stall_the_event_loop(
    database_url: str, clean_database: None
) -> None:
    """50 concurrent logins while /health is probed: hashing runs in threads, so the probe
    keeps answering. Prints the probe latencies (a measurement, not a speed assertion)."""
    app = create_app(make_settings(database_url))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            await client.post(
                "/api/auth/signup", json={"email": "flood@example.com", "password": PASSWORD}
            )
            flood_start = time.perf_counter()
            logins = [
                asyncio.ensure_future(_login(client, "flood@example.com", PASSWORD))
                for _ in range(50)
            ]
            probe_ms: list[float] = []
            while not all(task.done() for task in logins) and len(probe_ms) < 200:
                start = time.perf_counter()
                assert (await client.get("/health")).status_code == 200
                probe_ms.append((time.perf_counter() - start) * 1000)
                await asyncio.sleep(0.01)
            results = await asyncio.gather(*logins)
            flood_ms = (time.perf_counter() - flood_start) * 1000

    assert [r.status_code for r in results] == [200] * 50
    assert probe_ms, "the logins finished before a single probe ran"
    print(
        f"\n/health during 50 concurrent logins ({flood_ms:.0f} ms in all): {len(probe_ms)} "
        f"probes, median {statistics.median(probe_ms):.1f} ms, max {max(probe_ms):.1f} ms"
    )
    # Hashing on the loop would queue each probe behind every pending hash, so a probe would
    # take about as long as the whole flood; off the loop, probes keep answering meanwhile.
    assert len(probe_ms) >= 3
    assert statistics.median(probe_ms) < flood_ms / 2
