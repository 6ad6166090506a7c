from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.db.models import Base, Timestamps, UUIDPrimaryKey
from app.positions.keys import POSITION_MAX_LENGTH

TITLE_MAX_LENGTH = 255
DESCRIPTION_MAX_LENGTH = 1000


class Task(UUIDPrimaryKey, Timestamps, Base):
    """One item of a user's task list."""

    __tablename__ = "tasks"
    __table_args__ = (
        CheckConstraint("length(btrim(title)) > 0", name="title_not_blank"),
        CheckConstraint(f"char_length(title) <= {TITLE_MAX_LENGTH}", name="title_max_length"),
        CheckConstraint(
            f"char_length(description) <= {DESCRIPTION_MAX_LENGTH}",
            name="description_max_length",
        ),
        CheckConstraint(
            "completed = (completed_at IS NOT NULL)", name="completed_at_matches_completed"
        ),
        CheckConstraint("(deleted_at IS NULL) = (position IS NOT NULL)", name="live_positioned"),
        # The owner's own list only; the owner's account goes, with its lists, with its tasks.
        ForeignKeyConstraint(
            ["user_id", "list_id"],
            ["lists.user_id", "lists.id"],
            ondelete="CASCADE",
            name="fk_tasks_list_id_lists",
        ),
        # A list's order, and its counts (an index-only scan of the live tasks' keys): one key
        # per live task in a list, checked at the end of each statement, so that one statement
        # can respace several tasks (positions/keys.py). A trashed task has no position.
        UniqueConstraint(
            "list_id",
            "position",
            postgresql_include=["completed"],
            deferrable=True,
            initially="IMMEDIATE",
        ),
        # Serves "one user's tasks, newest first" and its keyset pagination: live tasks only,
        # so the trash never slows a listing down.
        Index(
            "ix_tasks_user_id_created_at_id",
            "user_id",
            "created_at",
            "id",
            postgresql_where=text("deleted_at IS NULL"),
        ),
        # The trash, most recently deleted first (trash routes), and the trash's purge by age.
        Index(
            "ix_tasks_user_id_deleted_at_id",
            "user_id",
            "deleted_at",
            "id",
            postgresql_where=text("deleted_at IS NOT NULL"),
        ),
        Index("ix_tasks_deleted_at", "deleted_at", postgresql_where=text("deleted_at IS NOT NULL")),
        # The change feed: one user's tasks in the order they last changed (changes/).
        Index("uq_tasks_user_id_change_seq", "user_id", "change_seq", unique=True),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    # The owner's default list when a create names none (the tasks_record_change trigger).
    list_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    # Ordered by code point within the list (positions/keys.py); NULL in the trash.
    position: Mapped[str | None] = mapped_column(
        String(POSITION_MAX_LENGTH, collation="C"), nullable=True
    )
    title: Mapped[str] = mapped_column(String(TITLE_MAX_LENGTH), nullable=False)
    description: Mapped[str | None] = mapped_column(String(DESCRIPTION_MAX_LENGTH), nullable=True)
    completed: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=false())
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # 1 on create, +1 on every change (the tasks_record_change trigger); the task's ETag.
    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("1"))
    # Set when the task goes to the trash; the task routes see only tasks without it.
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # The owner's change counter when the task last changed (created, changed, trashed,
    # restored), set by the tasks_record_change trigger: the change feed's order (changes/).
    change_seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
