"""One /metrics for all the workers of a server (WEB_CONCURRENCY > 1): whichever worker answers
a scrape, the counters are the sum over every worker and the pool gauges name each worker.

Against the real run command (``python -m app serve``), whose uvicorn spawns the workers.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.cluster import StartServer, create_database
from tests.fixtures.processes import PostgresCluster

# Tens of seconds of real processes: scheduled first (see conftest.py).
pytestmark = pytest.mark.slow

REQUESTS = 300
CONCURRENCY = 20
SCRAPES = 8
POOL_SIZE = 5


def _children(pid: int) -> set[str]:
    """The pids of a process's children: uvicorn's worker processes."""
    tasks = Path(f"/proc/{pid}/task")
    children: set[str] = set()
    for task in tasks.iterdir():
        children |= set((task / "children").read_text().split())
    return children


async def test_every_scrape_counts_every_worker_and_labels_each_pool(
    pg_cluster: PostgresCluster, start_server: StartServer
) -> None:
    database_url = await create_database(pg_cluster.url())
    server = start_server(database_url, {"WEB_CONCURRENCY": "2", "DB_POOL_SIZE": str(POOL_SIZE)})
    assert server.process is not None
    # A connection per request, so the kernel spreads them over both workers' accept loops.
    no_reuse = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=server.base_url, limits=no_reuse, timeout=30) as http:
        before = await _health_count(http)
        answers = await asyncio.gather(*(http.get("/health") for _ in range(REQUESTS)))
        assert {answer.status_code for answer in answers} == {200}
        # The other worker writes its gauges at most a second after it starts.
        await asyncio.sleep(1.5)
        scrapes = [await http.get("/metrics") for _ in range(SCRAPES)]

    # uvicorn's workers (its children besides multiprocessing's resource tracker).
    children = _children(server.process.pid)
    for scrape in scrapes:
        assert scrape.status_code == 200
        samples = _samples(scrape.text)
        # Every scrape, whichever worker served it, counts all the requests of both.
        assert samples[("http_requests_total", _HEALTH)] == before + REQUESTS
        sizes = {labels["worker"]: size for labels, size in _labelled(scrape.text, "db_pool_size")}
        assert len(sizes) == 2
        assert set(sizes) <= children
        assert set(sizes.values()) == {POOL_SIZE}
        checked_out = _labelled(scrape.text, "db_pool_checked_out")
        assert {labels["worker"] for labels, _ in checked_out} == set(sizes)
        assert samples[("event_streams_open", frozenset())] == 0


_HEALTH = frozenset({("method", "GET"), ("route", "/health"), ("status", "200")})


async def _health_count(http: httpx.AsyncClient) -> float:
    """The /health requests counted so far (the start-up probes of the fixture)."""
    return _samples((await http.get("/metrics")).text).get(("http_requests_total", _HEALTH), 0.0)


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _labelled(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]
