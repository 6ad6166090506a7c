"""login sessions, and the notification that ends them on every process

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A trigger, not a statement in the routes: a session ended by any path (a route, the cascade
# of an account's deletion, an operator's UPDATE) reaches every process's revocation list.
NOTIFY_SESSION_ENDED = """
CREATE FUNCTION notify_session_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('session_ended', OLD.id::text);
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column(
            "id",
            postgresql.UUID(as_uuid=True),
            server_default=sa.text("gen_random_uuid()"),
            nullable=False,
        ),
        sa.Column("user_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "last_used_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.String(length=32), nullable=True),
        sa.Column("refresh_generation", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("refresh_salt", sa.LargeBinary(), nullable=False),
        sa.Column("user_agent", sa.String(length=256), nullable=True),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_sessions_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sessions")),
    )
    op.create_index(
        "ix_sessions_user_id_last_used_at", "sessions", ["user_id", "last_used_at"], unique=False
    )
    op.create_index(
        "ix_sessions_ended_at",
        "sessions",
        ["ended_at"],
        unique=False,
        postgresql_where=sa.text("ended_at IS NOT NULL"),
    )
    op.execute(NOTIFY_SESSION_ENDED)
    op.execute(
        "CREATE TRIGGER sessions_notify_ended AFTER UPDATE OF ended_at ON sessions "
        "FOR EACH ROW WHEN (OLD.ended_at IS NULL AND NEW.ended_at IS NOT NULL) "
        "EXECUTE FUNCTION notify_session_ended()"
    )
    op.execute(
        "CREATE TRIGGER sessions_notify_deleted AFTER DELETE ON sessions "
        "FOR EACH ROW WHEN (OLD.ended_at IS NULL) EXECUTE FUNCTION notify_session_ended()"
    )


def downgrade() -> None:
    op.drop_table("sessions")  # its triggers go with it
    op.execute("DROP FUNCTION notify_session_ended()")
