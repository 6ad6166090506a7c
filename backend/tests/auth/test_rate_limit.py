"""The per-address limit on signup and login (own app: the suite's shared app has it raised);
failed logins per account are in test_login_throttle.py."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.rate_limit import limited_address
from app.main import create_app
from tests.fixtures.accounts import PASSWORD, SIGNUP_URL, store_user
from tests.fixtures.app import client_at, make_settings

# Tens of seconds of real processes or waiting: scheduled first (see conftest.py).
pytestmark = pytest.mark.slow


@pytest.fixture
async def limited_app(database_url: str, clean_database: None) -> AsyncIterator[FastAPI]:
    settings = make_settings(database_url, rate_limit_auth_per_address="6/minute")
    async with LifespanManager(create_app(settings)) as manager:
        yield manager.app  # type: ignore[misc]


@pytest.fixture
async def limited_client(limited_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_at(limited_app, "127.0.0.1") as client:
        yield client


async def _login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/api/auth/login", json={"email": email, "password": password})


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


async def test_signup_probes_are_limited_per_address_exactly_like_logins(
    limited_client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """Signup says 409 when an email has an account (README: "Signup and account
    enumeration"), so probing emails through it must cost what guessing through login costs."""
    taken = [await store_user(engine) for _ in range(3)]
    probes = [
        await limited_client.post(SIGNUP_URL, json={"email": user.email, "password": PASSWORD})
        for user in taken
    ]
    logins = [(await _login(limited_client, user.email, "whatever1")).status_code for user in taken]

    over_signup = await limited_client.post(
        SIGNUP_URL, json={"email": "fourth@example.com", "password": PASSWORD}
    )
    over_login = await _login(limited_client, taken[0].email, PASSWORD)

    assert [p.json()["code"] for p in probes] == ["email_taken"] * 3
    assert logins == [401] * 3
    # One counter for both routes: the seventh attempt is refused, whichever route it uses.
    for over in (over_signup, over_login):
        assert over.status_code == 429, over.text
        assert over.json()["code"] == "rate_limited"
        assert int(over.headers["Retry-After"]) >= 1


@pytest.mark.parametrize(
    ("address", "counted_as"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.9", "203.0.113.9"),  # an IPv4 client of a dual-stack socket
        ("unknown", "unknown"),
    ],
)
def test_what_the_limits_count_for_an_address(address: str, counted_as: str) -> None:
    assert limited_address(address) == counted_as


async def test_the_addresses_of_one_ipv6_64_share_one_count(limited_app: FastAPI) -> None:
    statuses = []
    for i in range(7):
        async with client_at(limited_app, f"2001:db8:7:7::{i + 1:x}") as client:
            statuses.append((await _login(client, f"n{i}@example.com", "whatever1")).status_code)
    async with client_at(limited_app, "2001:db8:7:8::1") as client:
        next_64 = await _login(client, "n@example.com", "whatever1")

    assert statuses == [401] * 6 + [429]
    assert next_64.status_code == 401


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
