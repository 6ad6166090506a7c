from __future__ import annotations

from sqlalchemy import CheckConstraint, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.models import Base, Timestamps, UUIDPrimaryKey

EMAIL_MAX_LENGTH = 320
NAME_MAX_LENGTH = 100


class User(UUIDPrimaryKey, Timestamps, Base):
    """An account: who may sign in, and the owner of every task."""

    __tablename__ = "users"
    # Emails are stored lowercased, so the unique constraint is case-insensitive.
    __table_args__ = (CheckConstraint("email = lower(email)", name="email_lowercase"),)

    email: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH), unique=True, nullable=False)
    password_hash: Mapped[str] = mapped_column(Text, nullable=False)
    name: Mapped[str | None] = mapped_column(String(NAME_MAX_LENGTH), nullable=True)
