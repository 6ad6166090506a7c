from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Index, Integer, LargeBinary, String, func, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.db.models import Base, UUIDPrimaryKey

USER_AGENT_MAX_LENGTH = 256
ADDRESS_MAX_LENGTH = 64
# The trigger behind revocations (sessions/revocations.py): every process LISTENs on this
# channel, so a session ended anywhere (a route, a cascade, an operator's UPDATE) is refused
# everywhere.
SESSION_ENDED_CHANNEL = "session_ended"


class LoginSession(UUIDPrimaryKey, Base):
    """One signed-in device or browser: what its refresh token renews, and what logout ends.

    No refresh token is stored: a token is an HMAC of (id, refresh_generation, refresh_salt)
    under a key derived from JWT_SECRET (sessions/refresh_tokens.py), so neither a database
    dump nor the secret alone can refresh.
    """

    __tablename__ = "sessions"
    __table_args__ = (
        # The user's session list, and ending all of them.
        Index("ix_sessions_user_id_last_used_at", "user_id", "last_used_at"),
        # The revocation list every process loads at start: recently ended sessions.
        Index("ix_sessions_ended_at", "ended_at", postgresql_where=text("ended_at IS NOT NULL")),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    last_used_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    # The absolute end (SESSION_LIFETIME_DAYS after login); the idle end is last_used_at's.
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    end_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    refresh_generation: Mapped[int] = mapped_column(
        Integer, nullable=False, server_default=text("0")
    )
    # When the current generation replaced the previous one (the grace window starts here).
    rotated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    refresh_salt: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    user_agent: Mapped[str | None] = mapped_column(String(USER_AGENT_MAX_LENGTH), nullable=True)
    # Truncated at login (an IPv4 /24, an IPv6 /48): enough to recognise a place, not a host.
    address: Mapped[str | None] = mapped_column(String(ADDRESS_MAX_LENGTH), nullable=True)
