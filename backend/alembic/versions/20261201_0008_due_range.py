"""a due's day from 1000-01-01 to 9998-12-31, and its instant finite

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As in the model (app/tasks/models.py FIRST_DUE_DAY, LAST_DUE_DAY), written out.
DUE_DATE_RANGE = "due_date BETWEEN '1000-01-01' AND '9998-12-31'"


def upgrade() -> None:
    # 0007 let a due fall on any day: the calendar's ends were stored as infinity (and answered
    # as a null day), and the days near them broke the due order. Those dues are cleared, each
    # a change (a new version, in the feed), so that clients learn of it.
    op.execute(
        "UPDATE tasks SET due_date = NULL, due_datetime = NULL, due_timezone = NULL, "  # noqa: S608 (constant text)
        f"due_at = NULL WHERE NOT ({DUE_DATE_RANGE}) OR NOT isfinite(due_at)"
    )
    op.create_check_constraint(op.f("ck_tasks_due_date_range"), "tasks", DUE_DATE_RANGE)
    op.create_check_constraint(op.f("ck_tasks_due_at_finite"), "tasks", "isfinite(due_at)")
    # A list's create answered, and stored for its key's replays, counts of every user's tasks
    # (a new list has none).
    # (A colon before a word is a bind parameter in op.execute's text: escaped.)
    op.execute(
        "UPDATE idempotency_keys SET body = regexp_replace(body, "
        r"""'"open_tasks"\:[0-9]+,"completed_tasks"\:[0-9]+}$', """
        r"""'"open_tasks"\:0,"completed_tasks"\:0}') """
        r"""WHERE status = 201 AND body ~ '"open_tasks"\:[0-9]+,"completed_tasks"\:[0-9]+}$'"""
    )


def downgrade() -> None:
    # The cleared dues stay cleared: they were out of the range that any client could read.
    op.drop_constraint(op.f("ck_tasks_due_at_finite"), "tasks", type_="check")
    op.drop_constraint(op.f("ck_tasks_due_date_range"), "tasks", type_="check")
