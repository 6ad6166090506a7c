"""Apply Alembic migrations from code (the run command, the container entrypoint, tests)."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from alembic import command

ALEMBIC_DIR = Path(__file__).resolve().parents[2] / "alembic"
# Any constant: several workers or replicas starting at once migrate one at a time.
MIGRATION_LOCK_ID = 0x7A5C_0001


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def take_migration_lock(connection: Connection) -> None:
    """Called by alembic/env.py on every path that migrates (the run command, the tests, the
    ``alembic`` command line), in the one transaction the whole migration runs in."""
    # The request timeout does not apply to migrations: waiting for another replica's
    # migration, or building an index on a large table, may take longer than a query should.
    connection.execute(text("SELECT set_config('statement_timeout', '0', true)"))
    connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})


def _upgrade(connection: Connection, revision: str) -> None:
    command.upgrade(alembic_config(connection), revision)


def _downgrade(connection: Connection, revision: str) -> None:
    command.downgrade(alembic_config(connection), revision)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade, revision)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(_downgrade, revision)
