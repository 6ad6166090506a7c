"""task versions, and the idempotency keys that make writes safe to retry

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A trigger, as for updated_at: every change moves the version, whichever statement (or
# operator) made it, and re-setting a value to itself is not a change. Named so that it fires
# before tasks_set_updated_at (triggers fire in name order), which then sees the row changed.
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
    op.add_column(
        "tasks", sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False)
    )
    op.execute(BUMP_VERSION)
    op.execute(
        "CREATE TRIGGER tasks_bump_version BEFORE UPDATE ON tasks "
        "FOR EACH ROW EXECUTE FUNCTION bump_version()"
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("user_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("user_id", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index(
        "ix_idempotency_keys_created_at",
        "idempotency_keys",
        ["created_at"],
        unique=False,
        postgresql_using="brin",
    )


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.execute("DROP TRIGGER tasks_bump_version ON tasks")
    op.execute("DROP FUNCTION bump_version()")
    op.drop_column("tasks", "version")
