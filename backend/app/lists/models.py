from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
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

NAME_MAX_LENGTH = 100
DEFAULT_LIST_NAME = "Inbox"


class List(UUIDPrimaryKey, Timestamps, Base):
    """A user's list of tasks. Every user has one default list (made with the account by the
    users_create_default_list trigger), which takes the tasks created without a list and cannot
    be deleted. A deleted list stays as a row (``deleted_at``) so the change feed can say so."""

    __tablename__ = "lists"
    __table_args__ = (
        CheckConstraint("length(btrim(name)) > 0", name="name_not_blank"),
        CheckConstraint(f"char_length(name) <= {NAME_MAX_LENGTH}", name="name_max_length"),
        CheckConstraint("(deleted_at IS NULL) = (position IS NOT NULL)", name="live_positioned"),
        CheckConstraint("NOT (is_default AND deleted_at IS NOT NULL)", name="default_kept"),
        # Tasks refer to (user_id, id), so a task can only ever be in its own owner's list.
        UniqueConstraint("user_id", "id"),
        # Checked at the end of each statement, so one statement can respace several lists.
        UniqueConstraint("user_id", "position", deferrable=True, initially="IMMEDIATE"),
        Index(
            "uq_lists_user_id_default",
            "user_id",
            unique=True,
            postgresql_where=text("is_default"),
        ),
        # The change feed: one user's lists in the order they last changed (changes/).
        Index("uq_lists_user_id_change_seq", "user_id", "change_seq", unique=True),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    name: Mapped[str] = mapped_column(String(NAME_MAX_LENGTH), nullable=False)
    # Ordered by code point (positions/keys.py); NULL once deleted, so it frees its place.
    position: Mapped[str | None] = mapped_column(
        String(POSITION_MAX_LENGTH, collation="C"), nullable=True
    )
    is_default: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=false())
    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("1"))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    change_seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
