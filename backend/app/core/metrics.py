"""Prometheus metrics: request count and latency by route template, and database pool usage.

Each app has its own registry (tests build several apps in one process). With several uvicorn
workers every worker serves its own numbers; scrape each worker or aggregate in Prometheus.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.pool import QueuePool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.db import Database

# Paths that matched no route share one label, so scanners cannot explode the label set.
UNMATCHED_ROUTE = "<unmatched>"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests",
            "HTTP requests served",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time from request start to the end of the response",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._pool_collector: PoolCollector | None = None

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        labels = (method, route, str(status))
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)

    def watch_pool(self, database: Database) -> None:
        self._pool_collector = PoolCollector(database)
        self.registry.register(self._pool_collector)

    def unwatch_pool(self) -> None:
        if self._pool_collector is not None:
            self.registry.unregister(self._pool_collector)
            self._pool_collector = None


class PoolCollector(Collector):
    def __init__(self, database: Database) -> None:
        self._database = database

    def collect(self) -> Iterator[Metric]:
        pool = self._database.engine.pool
        if not isinstance(pool, QueuePool):
            return
        size = GaugeMetricFamily("db_pool_size", "Configured persistent connections")
        size.add_metric([], pool.size())
        checked_out = GaugeMetricFamily(
            "db_pool_checked_out", "Connections currently lent to requests"
        )
        checked_out.add_metric([], pool.checkedout())
        overflow = GaugeMetricFamily(
            "db_pool_overflow", "Connections open beyond the pool size (negative: unopened)"
        )
        overflow.add_metric([], pool.overflow())
        yield from (size, checked_out, overflow)


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_recording_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_recording_status)
        finally:
            route = scope.get("route")
            self.metrics.observe(
                scope["method"],
                getattr(route, "path", UNMATCHED_ROUTE),
                status,
                time.perf_counter() - start,
            )
