"""live updates: each numbered change notifies its owner's id on the task_changes channel

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# 0005's next_change_seq, which now also notifies `task_changes` (changes/models.py) with the
# owner's id. PostgreSQL sends a notification when its transaction commits, and once however
# many rows of the owner it changed, so every process's listener learns "this owner's feed
# moved" after the change is visible.
NEXT_CHANGE_SEQ = """
CREATE OR REPLACE FUNCTION next_change_seq(owner uuid) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    PERFORM FROM change_heads WHERE user_id = owner FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        INSERT INTO change_heads (user_id) VALUES (owner) ON CONFLICT DO NOTHING;
        PERFORM FROM change_heads WHERE user_id = owner FOR NO KEY UPDATE;
        IF NOT FOUND THEN  -- deleted with its owner meanwhile: never number without the lock
            RAISE foreign_key_violation USING MESSAGE = 'the owner of this change is gone';
        END IF;
    END IF;
    PERFORM pg_notify('task_changes', owner::text);
    RETURN nextval('task_change_seq');
END
$$
"""
NOTIFY = "    PERFORM pg_notify('task_changes', owner::text);\n"
# The function as 0005 created it.
NEXT_CHANGE_SEQ_0005 = NEXT_CHANGE_SEQ.replace(NOTIFY, "")


def upgrade() -> None:
    op.execute(NEXT_CHANGE_SEQ)


def downgrade() -> None:
    op.execute(NEXT_CHANGE_SEQ_0005)
