"""Prometheus metrics: request count and latency by route template, database pool usage by
worker, open event streams, and the /metrics route that serves them.

With one worker the numbers live in the app's registry (each app has its own: tests build
several apps in one process). With several (the run command sets PROMETHEUS_MULTIPROC_DIR
when WEB_CONCURRENCY > 1, see metrics_folder.py), prometheus-client's multiprocess mode keeps
every worker's numbers in files in that folder, so whichever worker answers a scrape serves
all of them: counters summed over every worker that ever ran, the pool gauges of each live
worker under its ``worker`` label (its pid), the event streams summed over the live workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
from collections.abc import Sized
from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from pydantic import SecretStr
from sqlalchemy.pool import QueuePool

from app.db.database import Database
from app.http.errors import AppError, ErrorCode
from app.observability.metrics_folder import multiprocess_dir

logger = structlog.get_logger("app.metrics")

# Paths that matched no route share one label, so scanners cannot explode the label set.
UNMATCHED_ROUTE = "<unmatched>"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# How often a worker writes its gauges for the others' scrapes (multiprocess mode only; a
# worker answering a scrape writes its own first).
GAUGE_REFRESH_SECONDS = 1.0


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
        # livesum: a gauge file goes with its worker (mark_process_dead), and each worker's
        # own label makes the sum its value.
        self._pool_size, self._pool_checked_out, self._pool_overflow = (
            Gauge(name, help_, ["worker"], registry=self.registry, multiprocess_mode="livesum")
            for name, help_ in (
                ("db_pool_size", "Configured persistent connections"),
                ("db_pool_checked_out", "Connections currently lent to requests"),
                ("db_pool_overflow", "Connections open beyond the pool size (negative: unopened)"),
            )
        )
        self._event_streams = Gauge(
            "event_streams_open",
            "Event streams open (in all workers)",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self._worker = str(os.getpid())
        self._database: Database | None = None
        self._streams: Sized = ()
        self._refresher: asyncio.Task[None] | None = None
        self._multiprocess = multiprocess_dir() is not None
        if self._multiprocess:
            self._exposed = CollectorRegistry()
            multiprocess.MultiProcessCollector(self._exposed)  # type: ignore[no-untyped-call]
        else:
            self._exposed = self.registry

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        labels = (method, route, str(status))
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)

    def watch(self, database: Database, streams: Sized) -> None:
        """Publish ``database``'s pool and how many ``streams`` are open (len at refresh)."""
        self._database, self._streams = database, streams
        self.refresh()
        if self._multiprocess:
            self._refresher = asyncio.create_task(self._refresh_periodically(), name="metrics")

    async def unwatch(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            # Nothing the refresher did may stop the rest of the shutdown.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._refresher
            self._refresher = None
        self._database, self._streams = None, ()
        for gauge in (self._pool_size, self._pool_checked_out, self._pool_overflow):
            with contextlib.suppress(KeyError):
                gauge.remove(self._worker)
        if self._multiprocess:
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    def refresh(self) -> None:
        """Write this worker's gauges (at every scrape it answers, and periodically with
        several workers)."""
        self._event_streams.set(len(self._streams))
        pool = self._database.engine.pool if self._database is not None else None
        if not isinstance(pool, QueuePool):
            return
        self._pool_size.labels(self._worker).set(pool.size())
        self._pool_checked_out.labels(self._worker).set(pool.checkedout())
        self._pool_overflow.labels(self._worker).set(pool.overflow())

    def exposition(self) -> bytes:
        self.refresh()
        return generate_latest(self._exposed)

    async def _refresh_periodically(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(GAUGE_REFRESH_SECONDS)
            try:
                self.refresh()
            except Exception as error:  # the metrics folder gone, say: the service goes on
                if not failing:  # once per run of failures, not every second
                    logger.warning("metrics_refresh_failed", error=type(error).__name__)
                failing = True
            else:
                failing = False


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
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
