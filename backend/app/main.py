"""create_app(): lifespan, middleware, routers and error handlers; nothing else."""

from __future__ import annotations

import functools
import gc
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TypedDict

import structlog
from fastapi import FastAPI

from app import __version__
from app.auth.export import ExportSlots
from app.auth.limit_storage import LimitStorage
from app.auth.rate_limit import RateLimiter
from app.auth.router import router as auth_router
from app.auth.tokens import TokenCodec
from app.changes.models import TASK_CHANGES_CHANNEL
from app.changes.retention import sync_purge
from app.changes.router import router as changes_router
from app.db.database import Database
from app.db.engine import DriverConnection, connect_outside_pool
from app.db.notifications import NotificationListener
from app.db.purge import PurgeLoop
from app.http.allowed_hosts import AllowedHostsMiddleware
from app.http.body_limit import BodySizeLimitMiddleware
from app.http.cors import CREDENTIALED_PATHS, CrossOriginMiddleware
from app.http.docs import install_docs
from app.http.errors import UNEXPECTED_ERROR_RESPONSE
from app.http.handlers import register_error_handlers
from app.http.last_resort import LastResortErrorMiddleware
from app.http.openapi import install_openapi, operation_id
from app.http.security_headers import SecurityHeadersMiddleware
from app.idempotency.purge import key_purge
from app.lists.router import router as lists_router
from app.live.hub import EventHub
from app.live.router import router as live_router
from app.observability.health import router as health_router
from app.observability.logging import configure_logging
from app.observability.metrics import Metrics
from app.observability.metrics import router as metrics_router
from app.observability.observer import RequestObserverMiddleware
from app.sessions.deps import SessionConfig
from app.sessions.models import SESSION_ENDED_CHANNEL
from app.sessions.router import router as sessions_router
from app.settings import Settings, load_settings
from app.tasks.router import router as tasks_router
from app.tasks.trash_router import router as trash_router

logger = structlog.get_logger("app.main")


class LifespanState(TypedDict):
    database: Database
    listener: NotificationListener
    events: EventHub  # also closed by the server's shutdown (http/server_protocol.py)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    configure_logging(settings.log_level, settings.log_format)
    metrics = Metrics(settings.metrics_token) if settings.metrics_enabled else None
    sessions = SessionConfig.from_settings(settings)
    rate_limiter = RateLimiter.from_settings(settings)

    lifespan = _lifespan(settings, sessions, rate_limiter.storage, metrics)

    app = FastAPI(
        title="Task API",
        version=__version__,
        summary="Each user's personal task list, stored in PostgreSQL.",
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
        responses=UNEXPECTED_ERROR_RESPONSE,
        openapi_url="/openapi.json" if settings.openapi_enabled else None,
        docs_url=None,  # install_docs serves them, without a CDN
        redoc_url=None,
    )
    install_openapi(app)
    app.state.sessions = sessions
    app.state.require_if_match = settings.require_if_match
    app.state.export_slots = ExportSlots(settings.export_max_concurrent)
    app.state.token_codec = TokenCodec.from_settings(settings, revoked=sessions.revoked.ids)
    app.state.rate_limiter = rate_limiter
    register_error_handlers(app)
    # Routes are matched in order: the task routes, which take nearly all the traffic, first.
    app.include_router(tasks_router)
    app.include_router(trash_router)
    app.include_router(lists_router)
    app.include_router(changes_router)
    app.include_router(live_router)
    app.include_router(auth_router)
    app.include_router(sessions_router)
    app.include_router(health_router)
    if metrics:
        app.state.metrics = metrics
        app.include_router(metrics_router)
    if settings.docs_enabled:
        install_docs(app)
    # Added first = innermost. From the outside in: security headers and the request observer
    # (request id, access line, metrics) see every answer, preflights included; CORS then
    # wraps every answer the app can give, so a browser can read even the last resort's 500
    # and the body cap's 413.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_body_bytes)
    app.add_middleware(LastResortErrorMiddleware)
    if settings.cors_origins:
        # Credentials mode (the refresh cookie) only on the auth routes that use the cookie;
        # bearer tokens everywhere else. With no origin configured (the SPA served from the
        # API's own origin) a browser refuses cross-origin reads anyway, so no middleware to
        # cross on every request.
        app.add_middleware(
            CrossOriginMiddleware,
            origins=settings.cors_origins,
            allow_headers=settings.cors_allow_headers,
            expose_headers=settings.cors_expose_headers,
            credentialed_paths=CREDENTIALED_PATHS,
        )
    if settings.allowed_hosts:
        # Inside the observer: a refused host still gets an access line and a request id.
        app.add_middleware(AllowedHostsMiddleware, hosts=settings.allowed_hosts)
    app.add_middleware(RequestObserverMiddleware, metrics=metrics)
    app.add_middleware(SecurityHeadersMiddleware)
    return app


def _lifespan(
    settings: Settings, sessions: SessionConfig, limits: LimitStorage, metrics: Metrics | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[LifespanState]]:
    """What lives as long as the app: the pool, the LISTEN connection, the event streams, the
    purges, the rate limits' Redis connections."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[LifespanState]:
        database = Database.from_settings(settings)
        events = EventHub(
            database,
            max_streams_per_user=settings.events_max_streams_per_user,
            heartbeat_seconds=settings.events_heartbeat_seconds,
            deaf=lambda: listener.lost_too_long(),  # noqa: PLW0108 (the listener comes next)
        )

        async def on_listening(connection: DriverConnection) -> None:
            await sessions.revoked.reload(connection)
            await events.on_listening(connection)

        listener = NotificationListener(
            connect=functools.partial(connect_outside_pool, settings, settings.listen_database),
            channels={
                SESSION_ENDED_CHANNEL: sessions.revoked.on_notification,
                TASK_CHANGES_CHANNEL: events.on_notification,
            },
            on_connect=on_listening,
        )
        purges: list[PurgeLoop] = []
        try:
            await database.wait_until_ready(settings.db_startup_deadline_seconds)
            logger.info("database_ready", database=database.target.display)
            # Ended sessions and task changes reach this process through the database's
            # notifications; what was missed is made up for each time the listener (re)connects.
            await listener.start(settings.db_startup_deadline_seconds)
            purges = [key_purge(database, settings).start(), sync_purge(database, settings).start()]
            if limits.shared:
                # Not a reason to refuse to start: the rule for an unavailable Redis applies.
                problem = await limits.check()
                if problem is None:
                    logger.info("rate_limit_storage", shared=True, reachable=True)
                else:
                    logger.warning(
                        "rate_limit_storage", shared=True, reachable=False, error=problem
                    )
            if metrics:
                metrics.watch(database, events)
            # What start-up built (modules, routes, schemas, the pool) lives as long as the
            # process: exempt it from the cyclic collector, so each full collection scans only
            # what requests allocate (bench/RESULTS.md: the p99 it saves). Collected first, so
            # start-up's own garbage is not kept for the life of the process.
            gc.collect()
            gc.freeze()
            yield {"database": database, "listener": listener, "events": events}
        finally:
            gc.unfreeze()  # a process that builds another app (the tests) collects as usual
            if metrics:
                await metrics.unwatch()
            for running in purges:
                await running.stop()
            await events.stop()
            await listener.stop()
            await limits.close()
            await database.dispose()
            logger.info("database_disposed")

    return lifespan
