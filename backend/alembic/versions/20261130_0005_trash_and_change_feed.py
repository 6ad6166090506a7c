"""the trash, and the change feed: each owner's change counter, task change numbers, tombstones

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The next change number of a task of ``owner``. First the owner's change_heads row is locked
# until the transaction ends (created if missing; locking it again in the same transaction
# costs nothing and writes nothing): the owner's next change waits for this one to commit, so
# the owner's numbers, taken from one sequence after the lock, become visible in order
# (changes/models.py).
NEXT_CHANGE_SEQ = """
CREATE FUNCTION next_change_seq(owner uuid) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    PERFORM FROM change_heads WHERE user_id = owner FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        INSERT INTO change_heads (user_id) VALUES (owner) ON CONFLICT DO NOTHING;
        PERFORM FROM change_heads WHERE user_id = owner FOR NO KEY UPDATE;
        IF NOT FOUND THEN  -- deleted with its owner meanwhile: never number without the lock
            RAISE foreign_key_violation USING MESSAGE = 'the owner of this change is gone';
        END IF;
    END IF;
    RETURN nextval('task_change_seq');
END
$$
"""
# Replaces 0004's bump_version: a created task, and a real change to one (re-setting a value to
# itself is none), takes the owner's next change number; a change also moves the version. Named
# to fire before tasks_set_updated_at (triggers fire in name order), which then sees the change.
RECORD_TASK_CHANGE = """
CREATE FUNCTION record_task_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF ROW(NEW.*) IS NOT DISTINCT FROM ROW(OLD.*) THEN
            RETURN NEW;
        END IF;
        NEW.version := OLD.version + 1;
    END IF;
    NEW.change_seq := next_change_seq(NEW.user_id);
    RETURN NEW;
END
$$
"""
# A task deleted for good leaves a tombstone for the feed. Not when the delete cascades from the
# owner's deletion (the owner's row is gone by then): the owner's feed goes with the account.
RECORD_TASK_PURGE = """
CREATE FUNCTION record_task_purge() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM users WHERE id = OLD.user_id) THEN
        INSERT INTO task_tombstones (user_id, change_seq, task_id)
        VALUES (OLD.user_id, next_change_seq(OLD.user_id), OLD.id);
    END IF;
    RETURN NULL;
END
$$
"""
BUMP_VERSION = """
CREATE FUNCTION bump_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF ROW(NEW.*) IS DISTINCT FROM ROW(OLD.*) THEN
        NEW.version := OLD.version + 1;
    END IF;
    RETURN NEW;
END
$$
"""


def upgrade() -> None:
    op.execute("CREATE SEQUENCE task_change_seq AS bigint")
    op.create_table(
        "change_heads",
        sa.Column("user_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("expired_through", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_change_heads_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_change_heads")),
    )
    op.create_table(
        "task_tombstones",
        sa.Column("user_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("change_seq", sa.BigInteger(), nullable=False),
        sa.Column("task_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column(
            "purged_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_task_tombstones_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", "change_seq", name=op.f("pk_task_tombstones")),
    )
    op.create_index(
        "ix_task_tombstones_purged_at", "task_tombstones", ["purged_at"], postgresql_using="brin"
    )
    op.add_column("tasks", sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("tasks", sa.Column("change_seq", sa.BigInteger(), nullable=True))
    # Existing tasks enter the feed in the order they last changed; the backfill itself is no
    # change (no version, no updated_at moves).
    op.execute("DROP TRIGGER tasks_bump_version ON tasks")
    op.execute("DROP FUNCTION bump_version()")
    op.execute("ALTER TABLE tasks DISABLE TRIGGER tasks_set_updated_at")
    op.execute(
        "UPDATE tasks SET change_seq = numbered.seq FROM ("
        "SELECT id, row_number() OVER (PARTITION BY user_id ORDER BY updated_at, id) AS seq "
        "FROM tasks) AS numbered WHERE tasks.id = numbered.id"
    )
    op.execute("ALTER TABLE tasks ENABLE TRIGGER tasks_set_updated_at")
    op.execute("INSERT INTO change_heads (user_id) SELECT DISTINCT user_id FROM tasks")
    op.execute(
        "SELECT setval('task_change_seq', coalesce((SELECT max(change_seq) FROM tasks), 0) + 1, "
        "false)"
    )
    op.alter_column("tasks", "change_seq", nullable=False)
    op.create_index("uq_tasks_user_id_change_seq", "tasks", ["user_id", "change_seq"], unique=True)
    op.drop_index("ix_tasks_user_id_created_at_id", table_name="tasks")
    op.create_index(
        "ix_tasks_user_id_created_at_id",
        "tasks",
        ["user_id", "created_at", "id"],
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_index(
        "ix_tasks_user_id_deleted_at_id",
        "tasks",
        ["user_id", "deleted_at", "id"],
        postgresql_where=sa.text("deleted_at IS NOT NULL"),
    )
    op.create_index(
        "ix_tasks_deleted_at",
        "tasks",
        ["deleted_at"],
        postgresql_where=sa.text("deleted_at IS NOT NULL"),
    )
    op.execute(NEXT_CHANGE_SEQ)
    op.execute(RECORD_TASK_CHANGE)
    op.execute(RECORD_TASK_PURGE)
    op.execute(
        "CREATE TRIGGER tasks_record_change BEFORE INSERT OR UPDATE ON tasks "
        "FOR EACH ROW EXECUTE FUNCTION record_task_change()"
    )
    op.execute(
        "CREATE TRIGGER tasks_record_purge AFTER DELETE ON tasks "
        "FOR EACH ROW EXECUTE FUNCTION record_task_purge()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER tasks_record_purge ON tasks")
    op.execute("DROP TRIGGER tasks_record_change ON tasks")
    op.execute("DROP FUNCTION record_task_purge()")
    op.execute("DROP FUNCTION record_task_change()")
    op.execute("DROP FUNCTION next_change_seq(uuid)")
    # Before the trash, a deleted task was gone: the trash's tasks go for good.
    op.execute("DELETE FROM tasks WHERE deleted_at IS NOT NULL")
    op.drop_index("ix_tasks_deleted_at", table_name="tasks")
    op.drop_index("ix_tasks_user_id_deleted_at_id", table_name="tasks")
    op.drop_index("ix_tasks_user_id_created_at_id", table_name="tasks")
    op.create_index("ix_tasks_user_id_created_at_id", "tasks", ["user_id", "created_at", "id"])
    op.drop_index("uq_tasks_user_id_change_seq", table_name="tasks")
    op.drop_column("tasks", "change_seq")
    op.drop_column("tasks", "deleted_at")
    op.execute(BUMP_VERSION)
    op.execute(
        "CREATE TRIGGER tasks_bump_version BEFORE UPDATE ON tasks "
        "FOR EACH ROW EXECUTE FUNCTION bump_version()"
    )
    op.drop_index("ix_task_tombstones_purged_at", table_name="task_tombstones")
    op.drop_table("task_tombstones")
    op.drop_table("change_heads")
    op.execute("DROP SEQUENCE task_change_seq")
