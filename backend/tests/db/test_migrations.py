"""Alembic migrations: idempotent, reversible, in step with the models, and the schema's
updated_at trigger."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from app.auth import models as _auth_models  # noqa: F401  (registers the table)
from app.changes import models as _change_models  # noqa: F401  (registers the tables)
from app.db.engine import create_engine
from app.db.migrations import MIGRATION_LOCK_ID, alembic_config, downgrade, upgrade
from app.db.models import Base
from app.idempotency import models as _idempotency_models  # noqa: F401  (registers the table)
from app.sessions import models as _session_models  # noqa: F401  (registers the table)
from app.settings import REPO_ROOT
from app.tasks import models as _task_models  # noqa: F401  (registers the table)
from tests.fixtures.app import TEST_JWT_SECRET, make_settings
from tests.fixtures.database import scratch_database

HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()

SCHEMA = """
SELECT 'column', table_name || '.' || column_name,
       concat_ws(' ', data_type, character_maximum_length, is_nullable, column_default)
  FROM information_schema.columns WHERE table_schema = 'public'
UNION ALL
SELECT 'constraint', conname, pg_get_constraintdef(c.oid)
  FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace WHERE nspname = 'public'
UNION ALL
SELECT 'index', indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'
UNION ALL
SELECT 'trigger', tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t WHERE NOT tgisinternal
UNION ALL
SELECT 'function', proname, pg_get_functiondef(p.oid)
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE nspname = 'public'
ORDER BY 1, 2
"""


@pytest.fixture
async def empty_database_url(server_url: str) -> AsyncIterator[str]:
    """A database of its own, created empty and dropped afterwards."""
    async with scratch_database(server_url, "taskapi_migrations") as url:
        yield url


@pytest.fixture
async def empty_engine(empty_database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(make_settings(empty_database_url))
    yield engine
    await engine.dispose()


async def _schema(engine: AsyncEngine) -> list[tuple[Any, ...]]:
    async with engine.connect() as connection:
        return [tuple(row) for row in await connection.execute(text(SCHEMA))]


async def _version(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as connection:
        exists = await connection.scalar(text("SELECT to_regclass('alembic_version') IS NOT NULL"))
        if not exists:
            return []
        return list(await connection.scalars(text("SELECT version_num FROM alembic_version")))


async def test_upgrade_head_twice_is_a_no_op(empty_engine: AsyncEngine) -> None:
    await upgrade(empty_engine)
    schema = await _schema(empty_engine)
    async with empty_engine.begin() as connection:
        await connection.execute(
            text("INSERT INTO users (email, password_hash) VALUES ('kept@example.com', 'x')")
        )

    await upgrade(empty_engine)

    assert await _schema(empty_engine) == schema
    assert await _version(empty_engine) == [HEAD]
    async with empty_engine.connect() as connection:
        emails = (await connection.scalars(text("SELECT email FROM users"))).all()
    assert emails == ["kept@example.com"]


async def test_downgrade_base_removes_everything_and_upgrade_rebuilds_it(
    empty_engine: AsyncEngine,
) -> None:
    await upgrade(empty_engine)
    migrated = await _schema(empty_engine)

    await downgrade(empty_engine, "base")
    after_downgrade = await _schema(empty_engine)
    version_after_downgrade = await _version(empty_engine)
    await upgrade(empty_engine)

    # Only Alembic's own bookkeeping table is left, with no revision in it.
    assert [entry for entry in after_downgrade if not entry[1].startswith("alembic_version")] == []
    assert version_after_downgrade == []
    assert await _schema(empty_engine) == migrated
    assert await _version(empty_engine) == [HEAD]


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_models_and_migrations_agree(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        differences = await connection.run_sync(_differences)

    assert differences == []


async def test_alembic_command_line_migrates_the_database_url(
    empty_database_url: str, empty_engine: AsyncEngine
) -> None:
    """What the README tells operators to run: env.py reads DATABASE_URL through Settings."""
    env = {**os.environ, "DATABASE_URL": empty_database_url, "JWT_SECRET": TEST_JWT_SECRET}

    upgraded = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert upgraded.returncode == 0, upgraded.stderr
    assert await _version(empty_engine) == [HEAD]
    assert await _schema(empty_engine) != []


async def test_the_alembic_command_line_waits_for_the_migration_lock(
    empty_database_url: str, empty_engine: AsyncEngine
) -> None:
    """An operator's `alembic upgrade` takes the lock the run command takes, so it never runs
    beside a replica's start-up migration; and all its revisions commit together."""
    env = {**os.environ, "DATABASE_URL": empty_database_url, "JWT_SECRET": TEST_JWT_SECRET}
    async with empty_engine.connect() as holder:
        await holder.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        await holder.commit()
        alembic = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "alembic",
            "upgrade",
            "head",
            cwd=REPO_ROOT,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            waiting = await _wait_for_lock_waiter(holder)
            assert alembic.returncode is None
            assert await _version(empty_engine) == []
        finally:
            await holder.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID})
            await holder.commit()
        _, stderr = await asyncio.wait_for(alembic.communicate(), timeout=60)

    assert waiting
    assert alembic.returncode == 0, stderr.decode()
    assert await _version(empty_engine) == [HEAD]


async def _wait_for_lock_waiter(holder: AsyncConnection) -> bool:
    """Whether another session came to wait for the migration lock within 30 s."""
    for _ in range(300):
        waiters = await holder.scalar(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND objid = :id AND database = (SELECT oid FROM pg_database"
                " WHERE datname = current_database())"
            ),
            {"id": MIGRATION_LOCK_ID},
        )
        await holder.commit()
        if waiters:
            return True
        await asyncio.sleep(0.1)
    return False


# --- the updated_at trigger -----------------------------------------------------------------


async def _updated_at(connection: AsyncConnection, table: str, row_id: object) -> Any:
    return await connection.scalar(
        text(f"SELECT updated_at FROM {table} WHERE id = :id"),  # noqa: S608  (fixed names)
        {"id": row_id},
    )


@pytest.mark.parametrize(
    ("table", "no_op", "change"),
    [
        ("users", "name = name", "name = 'Renamed'"),
        ("tasks", "title = title, completed = completed", "title = 'Renamed'"),
    ],
)
async def test_updated_at_moves_on_a_real_change_and_not_on_a_no_op(
    db_session: AsyncSession, table: str, no_op: str, change: str
) -> None:
    user_id = await db_session.scalar(
        text(
            "INSERT INTO users (email, password_hash, name) "
            "VALUES ('trigger@example.com', 'x', 'Original') RETURNING id"
        )
    )
    row_id = user_id
    if table == "tasks":
        row_id = await db_session.scalar(
            text("INSERT INTO tasks (user_id, title) VALUES (:user_id, 'Original') RETURNING id"),
            {"user_id": user_id},
        )
    await db_session.commit()
    connection = await db_session.connection()
    created = await _updated_at(connection, table, row_id)

    await db_session.execute(
        text(f"UPDATE {table} SET {no_op} WHERE id = :id"),  # noqa: S608  (fixed names)
        {"id": row_id},
    )
    after_no_op = await _updated_at(connection, table, row_id)
    await db_session.execute(
        text(f"UPDATE {table} SET {change} WHERE id = :id"),  # noqa: S608  (fixed names)
        {"id": row_id},
    )
    after_change = await _updated_at(connection, table, row_id)
    await db_session.commit()

    assert after_no_op == created
    assert after_change > created


# --- 0002: stored emails in their normal form -------------------------------------------------


async def _insert_users(engine: AsyncEngine, emails: list[str]) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            text("INSERT INTO users (email, password_hash) VALUES (:email, 'x')"),
            [{"email": email} for email in emails],
        )


async def _emails(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as connection:
        return list(await connection.scalars(text("SELECT email FROM users ORDER BY email")))


async def test_0002_renormalises_the_emails_stored_before_it(empty_engine: AsyncEngine) -> None:
    await upgrade(empty_engine, "0001")
    # As revision 0001's signup stored them: the validator's form, lower-cased.
    await _insert_users(
        empty_engine,
        [
            "\uff41\uff44\uff41@example.com",
            "stra\u00dfe@example.com",
            "\ufb01ne@m\u00fcnchen.de",
            "plain@example.com",
            "\uab70@example.com",
        ],
    )

    await upgrade(empty_engine)

    assert await _emails(empty_engine) == sorted(
        [
            "ada@example.com",
            "strasse@example.com",
            "fine@m\u00fcnchen.de",
            "plain@example.com",
            "\uab70@example.com",
        ]
    )
    await downgrade(empty_engine, "0001")  # nothing to undo: 0001 takes the normal forms
    assert "ada@example.com" in await _emails(empty_engine)
    assert await _version(empty_engine) == ["0001"]


@pytest.mark.parametrize(
    "emails",
    [
        ["\uff41\uff44\uff41@example.com", "ada@example.com"],
        ["\uff41\uff44\uff41@example.com", "\uff41da@example.com"],  # both would change
        ["stra\u00dfe@example.com", "strasse@example.com"],
    ],
)
async def test_0002_refuses_to_merge_accounts_and_changes_nothing(
    empty_engine: AsyncEngine, emails: list[str]
) -> None:
    await upgrade(empty_engine, "0001")
    await _insert_users(empty_engine, emails)
    before = await _emails(empty_engine)

    with pytest.raises(RuntimeError, match=r"would share an email .* nothing was changed"):
        await upgrade(empty_engine)

    assert await _emails(empty_engine) == before
    assert await _version(empty_engine) == ["0001"]


async def _tasks_by_title(engine: AsyncEngine) -> dict[str, dict[str, Any]]:
    async with engine.connect() as connection:
        rows = (await connection.execute(text("SELECT * FROM tasks"))).mappings()
        return {row["title"]: dict(row) for row in rows}


async def test_0005_numbers_the_tasks_before_it_and_its_downgrade_forgets_the_trash(
    empty_engine: AsyncEngine,
) -> None:
    await upgrade(empty_engine, "0004")
    async with empty_engine.begin() as connection:
        ada, bob = [
            await connection.scalar(
                text("INSERT INTO users (email, password_hash) VALUES (:e, 'x') RETURNING id"),
                {"e": email},
            )
            for email in ("ada@example.com", "bob@example.com")
        ]
        # Created in one order, last changed in another.
        await connection.execute(
            text(
                "INSERT INTO tasks (user_id, title, updated_at) VALUES "
                "(:ada, 'a1', now() - interval '1 hour'), (:ada, 'a2', now() - interval '3 hours'),"
                "(:ada, 'a3', now() - interval '2 hours'), (:bob, 'b1', now())"
            ),
            {"ada": ada, "bob": bob},
        )
        await connection.execute(text("UPDATE tasks SET title = 'a1 edited' WHERE title = 'a1'"))
    before = await _tasks_by_title(empty_engine)

    await upgrade(empty_engine)

    after = await _tasks_by_title(empty_engine)
    # Numbered per owner in the order they last changed; the backfill itself changed nothing.
    assert [after[t]["change_seq"] for t in ("a2", "a3", "a1 edited")] == [1, 2, 3]
    assert after["b1"]["change_seq"] == 1
    for title, row in before.items():
        assert {k: after[title][k] for k in row} == row
        assert after[title]["deleted_at"] is None
    async with empty_engine.begin() as connection:
        assert await connection.scalar(text("SELECT count(*) FROM change_heads")) == 2
        # New changes are numbered above every number the backfill gave.
        await connection.execute(text("UPDATE tasks SET deleted_at = now() WHERE title = 'a2'"))
        await connection.execute(
            text("INSERT INTO tasks (user_id, title) VALUES (:ada, 'a4')"), {"ada": ada}
        )
    after = await _tasks_by_title(empty_engine)
    assert 3 < after["a2"]["change_seq"] < after["a4"]["change_seq"]
    assert after["a2"]["version"] == before["a2"]["version"] + 1

    await downgrade(empty_engine, "0004")

    remaining = await _tasks_by_title(empty_engine)
    # Before the trash a deleted task was gone: the trashed one goes for good.
    assert set(remaining) == {"a1 edited", "a3", "a4", "b1"}
    assert "change_seq" not in remaining["a3"]
    assert "deleted_at" not in remaining["a3"]
    async with empty_engine.begin() as connection:
        await connection.execute(text("UPDATE tasks SET title = 'a3 again' WHERE title = 'a3'"))
    # 0004's version trigger is back.
    assert (await _tasks_by_title(empty_engine))["a3 again"]["version"] == before["a3"][
        "version"
    ] + 1
    assert await _version(empty_engine) == ["0004"]


async def test_0006_puts_every_task_in_its_owners_inbox_in_creation_order_and_back(
    empty_engine: AsyncEngine,
) -> None:
    await upgrade(empty_engine, "0005")
    async with empty_engine.begin() as connection:
        ada, bob = [
            await connection.scalar(
                text("INSERT INTO users (email, password_hash) VALUES (:e, 'x') RETURNING id"),
                {"e": email},
            )
            for email in ("ada@example.com", "bob@example.com")
        ]
        await connection.execute(
            text(
                "INSERT INTO tasks (user_id, title, created_at) VALUES "
                "(:ada, 'a1', now() - interval '1 hour'), (:ada, 'a2', now() - interval '3 hours'),"
                "(:ada, 'a3', now() - interval '2 hours'), (:bob, 'b1', now())"
            ),
            {"ada": ada, "bob": bob},
        )
        await connection.execute(text("UPDATE tasks SET deleted_at = now() WHERE title = 'a3'"))
    before = await _tasks_by_title(empty_engine)

    await upgrade(empty_engine)

    after = await _tasks_by_title(empty_engine)
    async with empty_engine.connect() as connection:
        inboxes = dict(
            (
                await connection.execute(
                    text("SELECT user_id, id FROM lists WHERE is_default AND name = 'Inbox'")
                )
            ).all()
        )
    assert set(inboxes) == {ada, bob}
    for title, row in before.items():
        # The backfill changed nothing else: no version, number or time moved.
        assert {k: after[title][k] for k in row} == row
        assert after[title]["list_id"] == inboxes[row["user_id"]]
    # Live tasks in the order they were created; the trashed one has no place.
    assert after["a2"]["position"] < after["a1"]["position"]
    assert after["a3"]["position"] is None
    async with empty_engine.begin() as connection:
        # A new task goes last in the Inbox; a new account has its own Inbox.
        await connection.execute(
            text("INSERT INTO tasks (user_id, title) VALUES (:ada, 'a4')"), {"ada": ada}
        )
        await connection.execute(
            text("INSERT INTO users (email, password_hash) VALUES ('cy@example.com', 'x')")
        )
        assert await connection.scalar(text("SELECT count(*) FROM lists")) == 3
    after = await _tasks_by_title(empty_engine)
    assert after["a4"]["position"] > after["a1"]["position"]
    assert after["a4"]["list_id"] == inboxes[ada]

    await downgrade(empty_engine, "0005")

    remaining = await _tasks_by_title(empty_engine)
    assert set(remaining) == {"a1", "a2", "a3", "a4", "b1"}
    assert "list_id" not in remaining["a1"]
    assert remaining["a3"]["deleted_at"] is not None
    async with empty_engine.begin() as connection:
        # 0005's change trigger is back: a change takes a number, without lists.
        await connection.execute(text("UPDATE tasks SET title = 'a1 again' WHERE title = 'a1'"))
        assert await connection.scalar(text("SELECT to_regclass('lists')")) is None
    assert (await _tasks_by_title(empty_engine))["a1 again"]["version"] == 2
    assert await _version(empty_engine) == ["0005"]

    # And up again: the same tasks get their lists and places back.
    await upgrade(empty_engine)
    again = await _tasks_by_title(empty_engine)
    assert again["a2"]["position"] < again["a1 again"]["position"] < again["a4"]["position"]
    assert again["a3"]["position"] is None
    async with empty_engine.connect() as connection:
        misplaced = await connection.scalar(
            text(
                "SELECT count(*) FROM tasks JOIN lists ON lists.id = tasks.list_id "
                "WHERE NOT lists.is_default OR lists.user_id <> tasks.user_id"
            )
        )
        placed = await connection.scalar(
            text("SELECT count(*) FROM tasks JOIN lists ON lists.id = tasks.list_id")
        )
    assert (misplaced, placed) == (0, 5)


async def _new_user(connection: AsyncConnection, email: str) -> Any:
    """A user as a migration's tables hold one (no password to check); its id."""
    return await connection.scalar(
        text("INSERT INTO users (email, password_hash) VALUES (:email, 'x') RETURNING id"),
        {"email": email},
    )


async def test_0007_keeps_existing_tasks_makes_them_searchable_and_back(
    empty_engine: AsyncEngine,
) -> None:
    await upgrade(empty_engine, "0006")
    async with empty_engine.begin() as connection:
        ada = await _new_user(connection, "ada@example.com")
        await connection.execute(
            text(
                "INSERT INTO tasks (user_id, title, description) VALUES "
                "(:ada, 'Buy groceries', 'Crème fraîche'), (:ada, 'Weekly report', NULL)"
            ),
            {"ada": ada},
        )
    before = await _tasks_by_title(empty_engine)

    await upgrade(empty_engine)

    after = await _tasks_by_title(empty_engine)
    for title, row in before.items():
        # Nothing that was there moved: no version, number, place or time.
        assert {k: after[title][k] for k in row} == row
        assert (after[title]["priority"], after[title]["due_at"]) == (0, None)
    async with empty_engine.connect() as connection:
        found = await connection.scalars(
            text(
                "SELECT title FROM tasks WHERE search @@ to_tsquery('simple', 'creme') "
                "OR search @@ to_tsquery('simple', 'gro:*') ORDER BY title"
            )
        )
        assert list(found) == ["Buy groceries"]
    async with empty_engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE tasks SET priority = 3, due_date = '2026-05-01', "
                "due_at = '2026-05-01T00:00:00Z' WHERE title = 'Weekly report'"
            )
        )
    assert (await _tasks_by_title(empty_engine))["Weekly report"]["version"] == 2

    await downgrade(empty_engine, "0006")

    remaining = await _tasks_by_title(empty_engine)
    assert set(remaining) == {"Buy groceries", "Weekly report"}
    assert "search" not in remaining["Buy groceries"]
    assert "priority" not in remaining["Weekly report"]
    assert remaining["Weekly report"]["version"] == 2
    async with empty_engine.begin() as connection:
        # 0006's change trigger is back: a change still takes a number and a version.
        await connection.execute(
            text("UPDATE tasks SET title = 'Buy bread' WHERE title = 'Buy groceries'")
        )
    assert (await _tasks_by_title(empty_engine))["Buy bread"]["version"] == 2
    assert await _version(empty_engine) == ["0006"]


async def test_0008_clears_the_dues_out_of_range_as_changes_fixes_stored_counts_and_back(
    empty_engine: AsyncEngine,
) -> None:
    await upgrade(empty_engine, "0007")
    async with empty_engine.begin() as connection:
        ada = await _new_user(connection, "ada@example.com")
        # What 0007 let in: the calendar's ends as the driver writes them, a day before the
        # range, and a due inside it.
        await connection.execute(
            text(
                "INSERT INTO tasks (user_id, title, due_date, due_at) VALUES "
                "(:ada, 'infinite', 'infinity', 'infinity'),"
                "(:ada, 'ancient', '0500-03-01', '0500-03-01T00:00:00Z'),"
                "(:ada, 'fine', '2026-05-01', '2026-05-01T00:00:00Z')"
            ),
            {"ada": ada},
        )
        list_body = '{"id":"0","name":"New","version":1,"open_tasks":168,"completed_tasks":12}'
        task_body = '{"id":"1","title":"t","open_tasks":"x"}'
        await connection.execute(
            text(
                "INSERT INTO idempotency_keys (user_id, key, fingerprint, status, body) VALUES "
                "(:ada, 'list', '\\x00', 201, :list_body), (:ada, 'task', '\\x00', 201, :task_body)"
            ),
            {"ada": ada, "list_body": list_body, "task_body": task_body},
        )
    before = await _tasks_by_title(empty_engine)

    await upgrade(empty_engine)

    after = await _tasks_by_title(empty_engine)
    for title in ("infinite", "ancient"):
        assert (after[title]["due_date"], after[title]["due_at"]) == (None, None)
        # A change: a new version and a later change number, so clients learn of it.
        assert after[title]["version"] == before[title]["version"] + 1
        assert after[title]["change_seq"] > before[title]["change_seq"]
    assert after["fine"] == before["fine"]
    async with empty_engine.connect() as connection:
        bodies = dict(
            (await connection.execute(text("SELECT key, body FROM idempotency_keys"))).all()
        )
    assert bodies == {
        "list": list_body.replace("168", "0").replace("12}", "0}"),
        "task": task_body,
    }
    for due_date, due_at in (("0999-12-31", "0999-12-31T00:00:00Z"), ("2026-05-01", "infinity")):
        with pytest.raises(IntegrityError):
            async with empty_engine.begin() as connection:
                await connection.execute(
                    text(
                        "UPDATE tasks SET due_date = CAST(CAST(:d AS text) AS date), "
                        "due_at = CAST(CAST(:at AS text) AS timestamptz) WHERE title = 'fine'"
                    ),
                    {"d": due_date, "at": due_at},
                )

    await downgrade(empty_engine, "0007")

    async with empty_engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE tasks SET due_date = '0999-12-31', due_at = '0999-12-31T00:00:00Z' "
                "WHERE title = 'fine'"
            )
        )
    assert await _version(empty_engine) == ["0007"]
