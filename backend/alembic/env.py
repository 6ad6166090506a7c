"""Alembic environment: async, and the URL comes from the app's Settings (one source of truth).

Programmatic callers (the run command, tests) may pass an open connection in
``config.attributes["connection"]``; otherwise (the ``alembic`` command line) an engine is
built from DATABASE_URL. Either way the whole run is one transaction that first takes the
migration lock, so replicas starting together and an operator's ``alembic upgrade`` take turns.
"""

from __future__ import annotations

import asyncio

from sqlalchemy.engine import Connection

from alembic import context
from app.auth import models as auth_models  # noqa: F401  (registers the table)
from app.changes import models as change_models  # noqa: F401  (registers the tables)
from app.db.engine import create_engine
from app.db.migrations import MIGRATION_LOCK_ID, take_migration_lock
from app.db.models import Base
from app.idempotency import models as idempotency_models  # noqa: F401  (registers the table)
from app.lists import models as list_models  # noqa: F401  (registers the table)
from app.sessions import models as session_models  # noqa: F401  (registers the table)
from app.settings import load_settings
from app.tasks import models as task_models  # noqa: F401  (registers the table)

target_metadata = Base.metadata


def do_run_migrations(connection: Connection) -> None:
    # Begins the transaction (or joins the caller's) before Alembic looks, so Alembic treats it
    # as the caller's: every revision of the run commits together, under the lock.
    take_migration_lock(connection)
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    settings = load_settings()
    engine = create_engine(settings.model_copy(update={"db_pool_pre_ping": False}))
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        do_run_migrations(connection)
    else:
        asyncio.run(run_async_migrations())


def run_migrations_offline() -> None:
    context.configure(
        url=load_settings().database.url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        # A generated script migrates under the same lock as every other path.
        context.execute("SET LOCAL statement_timeout = 0")
        context.execute(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})")
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
