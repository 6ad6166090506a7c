"""Prometheus metrics: request count and latency by route template, database pool usage, and
the /metrics route that serves them.

Each app has its own registry (tests build several apps in one process). With several uvicorn
workers every worker serves its own numbers; scrape each worker or aggregate in Prometheus.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator, Sized
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import SecretStr
from sqlalchemy.pool import QueuePool

from app.db.database import Database
from app.http.errors import AppError, ErrorCode

# Paths that matched no route share one label, so scanners cannot explode the label set.
UNMATCHED_ROUTE = "<unmatched>"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self, scrape_token: SecretStr | None = None) -> None:
        # The numbers name routes, statuses and pool sizes: fine for a private network, but
        # a deployment that exposes the port can ask scrapers for a token.
        self.scrape_token = scrape_token
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
        self._event_streams: Gauge | None = None

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        labels = (method, route, str(status))
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)

    def watch_pool(self, database: Database) -> None:
        self._pool_collector = PoolCollector(database)
        self.registry.register(self._pool_collector)

    def watch_event_streams(self, streams: Sized) -> None:
        """Publish how many event streams are open in this process (len(streams) at scrape)."""
        if self._event_streams is None:
            self._event_streams = Gauge(
                "event_streams_open", "Event streams open in this process", registry=self.registry
            )
        self._event_streams.set_function(lambda: len(streams))

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


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


class ScrapeNotAuthorizedError(AppError):
    status_code, code, message = 401, ErrorCode.NOT_AUTHENTICATED, "A metrics token is required"

    def __init__(self) -> None:
        super().__init__(headers={"WWW-Authenticate": 'Bearer realm="metrics"'})


router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
async def serve_metrics(
    request: Request, metrics: Annotated[Metrics, Depends(get_metrics)]
) -> Response:
    """The Prometheus text format (METRICS_ENABLED), for a bearer of METRICS_TOKEN if set."""
    if metrics.scrape_token is not None:
        presented = request.headers.get("authorization", "").encode()
        expected = f"Bearer {metrics.scrape_token.get_secret_value()}".encode()
        if not hmac.compare_digest(presented, expected):
            raise ScrapeNotAuthorizedError()
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
