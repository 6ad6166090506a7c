from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    Date,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    SmallInteger,
    String,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import TSVECTOR, UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.db.models import Base, Timestamps, UUIDPrimaryKey
from app.positions.keys import POSITION_MAX_LENGTH

TITLE_MAX_LENGTH = 255
DESCRIPTION_MAX_LENGTH = 1000
PRIORITY_MAX = 3
TIMEZONE_MAX_LENGTH = 64
# The days a due may fall on: clear of the calendar's ends (0001-01-01 and 9999-12-31, which
# the driver writes as -infinity and infinity), so that no zone's offset takes a due's instant
# out of the calendar (tasks/due.py).
FIRST_DUE_DAY = date(1000, 1, 1)
LAST_DUE_DAY = date(9998, 12, 31)
# The text-search configuration of the search column and of every query against it.
SEARCH_CONFIG = "simple"
# Folds accents: NFKD splits "é" into "e" and a combining mark, which the class then removes
# (the same folding is applied to a search's query: tasks/listing.py).
COMBINING_MARKS = "[\\u0300-\\u036f]"
FOLD_ACCENTS = "regexp_replace(normalize({text}, NFKD), '" + COMBINING_MARKS + "', '', 'g')"
SEARCH_DOCUMENT = (
    f"to_tsvector('{SEARCH_CONFIG}'::regconfig, "
    + FOLD_ACCENTS.format(text="title || ' ' || coalesce(description, '')")
    + ")"
)


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
        CheckConstraint(f"priority BETWEEN 0 AND {PRIORITY_MAX}", name="priority_range"),
        # A due is a day (due_date alone) or a wall-clock time in a zone (due_datetime and
        # due_timezone, its day in due_date); due_at is the instant it sorts and filters by.
        CheckConstraint(
            "(due_datetime IS NULL) = (due_timezone IS NULL)", name="due_time_has_zone"
        ),
        CheckConstraint(
            "due_datetime IS NULL OR due_date = due_datetime::date", name="due_date_of_time"
        ),
        CheckConstraint("(due_date IS NULL) = (due_at IS NULL)", name="due_at_with_due"),
        CheckConstraint(
            f"due_date BETWEEN '{FIRST_DUE_DAY}' AND '{LAST_DUE_DAY}'", name="due_date_range"
        ),
        CheckConstraint("isfinite(due_at)", name="due_at_finite"),
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
        # sort=due (ascending, the tasks without a due last) and due_before/due_after.
        Index(
            "ix_tasks_user_id_due_at_id",
            "user_id",
            "due_at",
            "id",
            postgresql_where=text("deleted_at IS NULL"),
        ),
        # q= (full-text search) over the live tasks.
        Index(
            "ix_tasks_search",
            "search",
            postgresql_using="gin",
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    # The owner's default list when a create names none (the tasks_record_change trigger).
    list_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    # Ordered by code point within the list (positions/keys.py); NULL in the trash.
    position: Mapped[str | None] = mapped_column(
        String(POSITION_MAX_LENGTH, collation="C"), nullable=True
    )
    # 0 (none) to 3 (high).
    priority: Mapped[int] = mapped_column(SmallInteger, nullable=False, server_default=text("0"))
    due_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    # A wall-clock time (no zone) and the IANA zone it is read in (tasks/due.py).
    due_datetime: Mapped[datetime | None] = mapped_column(DateTime(timezone=False), nullable=True)
    due_timezone: Mapped[str | None] = mapped_column(String(TIMEZONE_MAX_LENGTH), nullable=True)
    # The instant of a timed due; for a day, 00:00 UTC of that day (tasks/due.py).
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Title and description for full-text search: 'simple' (no stemming, any language), accents
    # folded (NFKD without the combining marks); generated by PostgreSQL on every write.
    search: Mapped[str | None] = mapped_column(TSVECTOR, Computed(SEARCH_DOCUMENT, persisted=True))
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
