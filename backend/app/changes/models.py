"""The change feed's own tables: each owner's change lock, and the purged tasks' tombstones.

A task that was created, changed, trashed or restored is its own record in the feed: it carries
the number of its last change (tasks.change_seq). A task deleted for good leaves a
tombstone with the number of its purge. Both are written by triggers on `tasks` (migration
0005), in the transaction of the change, whichever statement or operator made it.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, func, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.db.models import Base

# Announces that owners' feeds moved: the owners' ids, comma-separated (db/notifications.py
# NotificationSender, after each write of TaskRepository and each batch of the trash's purge),
# or "*" for every owner. Every process's listener wakes those owners' event streams.
TASK_CHANGES_CHANNEL = "task_changes"


class ChangeHead(Base):
    """An owner's lock on their change numbers. A change locks this row until it commits and
    only then takes its number (from the task_change_seq sequence): the owner's next change
    waits for the lock, so the owner's numbers become visible in the order they were taken, and
    a reader that has seen number N has seen every number of the owner below N that will ever
    commit. A plain sequence alone cannot promise that: its numbers are taken at once and may
    commit out of order. Different owners never wait for each other."""

    __tablename__ = "change_heads"

    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    # The highest number among this owner's tombstones pruned so far: a cursor below it may
    # have missed a deletion the feed no longer holds (410 cursor_expired).
    expired_through: Mapped[int] = mapped_column(
        BigInteger, nullable=False, server_default=text("0")
    )


class TaskTombstone(Base):
    """A task deleted for good (purged from the trash): read by the feed as a deletion until it
    is older than CHANGES_RETENTION_DAYS."""

    __tablename__ = "task_tombstones"
    __table_args__ = (
        # The pruning's scan by age; rows arrive in purged_at order.
        Index("ix_task_tombstones_purged_at", "purged_at", postgresql_using="brin"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    change_seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    task_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    purged_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
