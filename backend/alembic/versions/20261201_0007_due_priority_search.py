"""due dates, priority, and full-text search of tasks

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As in the model (app/tasks/models.py SEARCH_DOCUMENT), written out: a migration keeps the
# text it ran with.
SEARCH_DOCUMENT = (
    "to_tsvector('simple'::regconfig, regexp_replace(normalize(title || ' ' || "
    "coalesce(description, ''), NFKD), '[\\u0300-\\u036f]', '', 'g'))"
)
# As 0006's, and: a generated column is NULL in NEW until after the BEFORE triggers, so the
# row is compared without it (to_jsonb, minus the column); and it moves updated_at itself
# (tasks_set_updated_at, which compared whole rows, goes).
RECORD_TASK_CHANGE = """
CREATE OR REPLACE FUNCTION record_task_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF to_jsonb(NEW) - 'search' = to_jsonb(OLD) - 'search' THEN
            RETURN NEW;
        END IF;
        NEW.version := OLD.version + 1;
        NEW.updated_at := clock_timestamp();
    ELSIF NEW.list_id IS NULL THEN
        NEW.list_id := (SELECT id FROM lists WHERE user_id = NEW.user_id AND is_default);
    END IF;
    NEW.change_seq := next_change_seq(NEW.user_id);
    IF NEW.deleted_at IS NOT NULL THEN
        NEW.position := NULL;
    ELSIF NEW.position IS NULL THEN
        NEW.position := position_key(NEW.change_seq);
    END IF;
    RETURN NEW;
END
$$
"""
RECORD_TASK_CHANGE_0006 = """
CREATE OR REPLACE FUNCTION record_task_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF ROW(NEW.*) IS NOT DISTINCT FROM ROW(OLD.*) THEN
            RETURN NEW;
        END IF;
        NEW.version := OLD.version + 1;
    ELSIF NEW.list_id IS NULL THEN
        NEW.list_id := (SELECT id FROM lists WHERE user_id = NEW.user_id AND is_default);
    END IF;
    NEW.change_seq := next_change_seq(NEW.user_id);
    IF NEW.deleted_at IS NOT NULL THEN
        NEW.position := NULL;
    ELSIF NEW.position IS NULL THEN
        NEW.position := position_key(NEW.change_seq);
    END IF;
    RETURN NEW;
END
$$
"""


def upgrade() -> None:
    op.execute(RECORD_TASK_CHANGE)
    op.execute("DROP TRIGGER tasks_set_updated_at ON tasks")
    op.add_column(
        "tasks",
        sa.Column("priority", sa.SmallInteger(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column("tasks", sa.Column("due_date", sa.Date(), nullable=True))
    op.add_column("tasks", sa.Column("due_datetime", sa.DateTime(timezone=False), nullable=True))
    op.add_column("tasks", sa.Column("due_timezone", sa.String(length=64), nullable=True))
    op.add_column("tasks", sa.Column("due_at", sa.DateTime(timezone=True), nullable=True))
    # Rewrites the table once (a stored generated column is computed for every row).
    op.add_column(
        "tasks",
        sa.Column(
            "search",
            postgresql.TSVECTOR(),
            sa.Computed(SEARCH_DOCUMENT, persisted=True),
            nullable=True,
        ),
    )
    op.create_check_constraint(op.f("ck_tasks_priority_range"), "tasks", "priority BETWEEN 0 AND 3")
    op.create_check_constraint(
        op.f("ck_tasks_due_time_has_zone"),
        "tasks",
        "(due_datetime IS NULL) = (due_timezone IS NULL)",
    )
    op.create_check_constraint(
        op.f("ck_tasks_due_date_of_time"),
        "tasks",
        "due_datetime IS NULL OR due_date = due_datetime::date",
    )
    op.create_check_constraint(
        op.f("ck_tasks_due_at_with_due"), "tasks", "(due_date IS NULL) = (due_at IS NULL)"
    )
    op.create_index(
        "ix_tasks_user_id_due_at_id",
        "tasks",
        ["user_id", "due_at", "id"],
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_index(
        "ix_tasks_search",
        "tasks",
        ["search"],
        postgresql_using="gin",
        postgresql_where=sa.text("deleted_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_search", table_name="tasks")
    op.drop_index("ix_tasks_user_id_due_at_id", table_name="tasks")
    for name in ("due_at_with_due", "due_date_of_time", "due_time_has_zone", "priority_range"):
        op.drop_constraint(op.f(f"ck_tasks_{name}"), "tasks", type_="check")
    for column in ("search", "due_at", "due_timezone", "due_datetime", "due_date", "priority"):
        op.drop_column("tasks", column)
    op.execute(RECORD_TASK_CHANGE_0006)
    op.execute(
        "CREATE TRIGGER tasks_set_updated_at BEFORE UPDATE ON tasks "
        "FOR EACH ROW EXECUTE FUNCTION set_updated_at()"
    )
