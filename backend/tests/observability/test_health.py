"""/health (liveness) and /health/db (readiness), with the database up, gone, and back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy.engine import make_url

from app import __version__
from app.main import create_app
from tests.fixtures.app import make_settings
from tests.fixtures.tcp_proxy import TcpProxy, running_proxy

# The users and tasks a test leaves through `client` are deleted after it (see fixtures/app.py).
pytestmark = pytest.mark.usefixtures("clean_database")

# What a load balancer may wait for a probe, as the issue states it.
PROBE_BOUND_SECONDS = 2.0


async def test_liveness_reports_version_and_a_connected_database(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": __version__, "database": "connected"}


async def test_readiness_reports_the_database_and_the_round_trip_time(
    client: httpx.AsyncClient, database_url: str
) -> None:
    response = await client.get("/health/db")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"status", "database", "latency_ms"}
    assert body["status"] == "ok"
    assert body["database"] == make_url(database_url).database
    assert isinstance(body["latency_ms"], float)
    assert body["latency_ms"] > 0


# --- the database goes away ----------------------------------------------------------------


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[TcpProxy]:
    async with running_proxy(database_url) as running:
        yield running


@pytest.fixture
async def proxied_client(proxy: TcpProxy) -> AsyncIterator[httpx.AsyncClient]:
    """An app with the default timeouts that started while the database was reachable."""
    async with LifespanManager(create_app(make_settings(proxy.url))) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


async def _probe(http: httpx.AsyncClient, path: str) -> tuple[httpx.Response, float]:
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(30):
        response = await http.get(path)
    return response, loop.time() - started


async def _take_database_away(proxy: TcpProxy, outage: str) -> None:
    if outage == "black_hole":
        proxy.black_hole()
    else:
        await proxy.refuse()


OUTAGES = ["black_hole", "refuse"]


@pytest.mark.parametrize("outage", OUTAGES)
async def test_liveness_stays_up_and_reports_the_database_disconnected(
    outage: str, proxy: TcpProxy, proxied_client: httpx.AsyncClient
) -> None:
    await _take_database_away(proxy, outage)

    # First with the pooled connection gone silent, then with a new connection attempt.
    first, first_elapsed = await _probe(proxied_client, "/health")
    second, second_elapsed = await _probe(proxied_client, "/health")

    for response in (first, second):
        assert response.status_code == 200
        assert response.json() == {
            "status": "ok",
            "version": __version__,
            "database": "disconnected",
        }
    assert first_elapsed < PROBE_BOUND_SECONDS
    assert second_elapsed < PROBE_BOUND_SECONDS


@pytest.mark.parametrize("outage", OUTAGES)
async def test_readiness_answers_503_within_two_seconds(
    outage: str, proxy: TcpProxy, proxied_client: httpx.AsyncClient, database_url: str
) -> None:
    await _take_database_away(proxy, outage)

    first, first_elapsed = await _probe(proxied_client, "/health/db")
    second, second_elapsed = await _probe(proxied_client, "/health/db")

    for response in (first, second):
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        assert response.json() == {
            "status": "unavailable",
            "database": make_url(database_url).database,
            "detail": "The database did not answer",
            "code": "database_unavailable",
        }
    assert first_elapsed < PROBE_BOUND_SECONDS
    assert second_elapsed < PROBE_BOUND_SECONDS


@pytest.mark.parametrize("outage", OUTAGES)
async def test_probes_recover_when_the_database_returns(
    outage: str, proxy: TcpProxy, proxied_client: httpx.AsyncClient
) -> None:
    await _take_database_away(proxy, outage)
    down = await proxied_client.get("/health/db")

    await proxy.forward()
    ready = await proxied_client.get("/health/db")
    alive = await proxied_client.get("/health")

    assert down.status_code == 503
    assert ready.status_code == 200, ready.text
    assert alive.json()["database"] == "connected"
