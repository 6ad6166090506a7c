"""The run command: ``python -m app [serve|migrate]``.

With DATABASE_URL unset it starts the embedded PostgreSQL and a development JWT secret, so a
newcomer needs nothing installed. Every failure before serving is ONE line on stderr and a
non-zero exit: no traceback, no password.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import NoReturn

import structlog
import uvicorn
from sqlalchemy.exc import DBAPIError

from app.db.database import Database
from app.db.embedded import EmbeddedDatabaseError, start_embedded_postgres
from app.db.errors import DatabaseStartupError
from app.db.migrations import upgrade
from app.observability.logging import configure_logging
from app.observability.metrics_folder import shared_metrics_folder
from app.settings import Settings, SettingsError, load_settings

logger = structlog.get_logger("app.cli")
JWT_SECRET_FILE = "jwt-secret"  # noqa: S105  (a file name)


def prepare_environment() -> Settings:
    """Settings for this process and for uvicorn's workers (which read the environment)."""
    settings = load_settings()
    if settings.database_url is not None:
        return settings
    os.environ["DATABASE_URL"] = start_embedded_postgres(settings.data_dir)
    if settings.jwt_secret is None:
        os.environ["JWT_SECRET"] = _development_jwt_secret(settings.data_dir)
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    logger.info(
        "using_embedded_database",
        data_dir=str(settings.data_dir / "postgres"),
        database=settings.database.display,
    )
    return settings


def _development_jwt_secret(data_dir: Path) -> str:
    path = data_dir / JWT_SECRET_FILE
    try:
        # Owner-only from the moment it exists: no window in which another user can open it.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(48))
    logger.warning(
        "development_jwt_secret",
        detail=f"JWT_SECRET is not set; using the generated development secret in {path}",
    )
    return path.read_text().strip()


async def verify_and_migrate(settings: Settings) -> None:
    database = Database.from_settings(settings)
    try:
        await database.wait_until_ready(settings.db_startup_deadline_seconds)
        await upgrade(database.engine)
    finally:
        await database.dispose()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser(
        "serve",
        help="migrate, then serve the API (default); HOST, PORT, WEB_CONCURRENCY and "
        "FORWARDED_ALLOW_IPS come from the settings",
    )
    serve.add_argument("--no-migrate", action="store_true", help="do not apply migrations")
    sub.add_parser("migrate", help="apply pending migrations and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = args.command or "serve"
    try:
        settings = load_settings()
        configure_logging(settings.log_level, settings.log_format)
        settings = prepare_environment()
        if command == "serve":
            settings.listen_database  # noqa: B018  (refused here in one line, not in a traceback)
        if command == "migrate" or not getattr(args, "no_migrate", False):
            asyncio.run(verify_and_migrate(settings))
            logger.info("migrations_applied", database=settings.database.display)
    except (SettingsError, DatabaseStartupError, EmbeddedDatabaseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except DBAPIError as exc:  # a migration failed; the driver's message names no password
        cause = exc.orig if exc.orig is not None else exc
        reason = (str(cause).splitlines() or [""])[0]
        print(f"error: Migration failed: {type(cause).__name__}: {reason}", file=sys.stderr)
        return 2
    if command == "migrate":
        return 0
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again to die of it
    # (status 143). Dying of a signal skips atexit, which would leave the embedded PostgreSQL
    # running; this handler turns that last signal into a normal exit with status 0.
    signal.signal(signal.SIGTERM, _exit_after_graceful_shutdown)
    with shared_metrics_folder(settings.web_concurrency):
        _serve(settings)
    return 0


def _serve(settings: Settings) -> None:
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.web_concurrency,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        loop="uvloop",
        # uvicorn's httptools protocol with limits on request heads (app/http/server_protocol.py);
        # named, not passed, so each worker process imports it.
        http="app.http.server_protocol:GuardedHttpToolsProtocol",
    )


def _exit_after_graceful_shutdown(signum: int, frame: FrameType | None) -> NoReturn:
    raise SystemExit(0)
