from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, Index, LargeBinary, SmallInteger, String, Text, func
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.db.models import Base

KEY_MAX_LENGTH = 255


class IdempotencyKey(Base):
    """A write a client may retry: its key, what the request was, and what it answered.

    The row is inserted by the same statement as the write it records (statements.py), so a
    write that committed always has its key committed with it, and one that did not has none.
    """

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        # The purge's scan for keys past their retention (purge.py). Rows arrive in created_at
        # order, so a block range index finds them, and costs a write almost nothing.
        Index("ix_idempotency_keys_created_at", "created_at", postgresql_using="brin"),
    )

    # No foreign key to users: its check would lock the user's row on every keyed write (and
    # could deadlock with the account's deletion). Deleting an account deletes its keys
    # (auth/statements.py); user ids are never reused.
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    key: Mapped[str] = mapped_column(String(KEY_MAX_LENGTH), primary_key=True)
    # SHA-256 of the request's method, route, path parameters and body (keys.py).
    fingerprint: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    status: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    # The response body's resource as PostgreSQL rendered it (JSON text), or none (204).
    body: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
