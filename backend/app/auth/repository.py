from __future__ import annotations

import uuid

import structlog
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.errors import AccountGoneError, EmailTakenError
from app.auth.models import User
from app.core.db import Database

logger = structlog.get_logger("app.auth")


class UserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def create(self, *, email: str, password_hash: str, name: str | None) -> User:
        # ON CONFLICT DO NOTHING: a duplicate email returns no row instead of aborting the
        # transaction with a unique violation.
        statement = (
            pg_insert(User)
            .values(email=email, password_hash=password_hash, name=name)
            .on_conflict_do_nothing(index_elements=[User.email])
            .returning(User)
        )
        user = (await self._session.scalars(statement)).one_or_none()
        if user is None:
            raise EmailTakenError()
        return user

    async def get(self, user_id: uuid.UUID) -> User | None:
        return await self._session.get(User, user_id)

    async def get_by_email(self, email: str) -> User | None:
        return await self._session.scalar(select(User).where(User.email == email))

    async def end_read_only_transaction(self) -> None:
        """Return the connection to the pool before slow non-database work (argon2), so a
        login flood cannot hold every pooled connection while it waits for the hasher.
        Only for transactions that wrote nothing. (Commit, not rollback: with
        expire_on_commit=False the users already read stay loaded; a rollback would expire them.)
        """
        await self._session.commit()


async def ensure_account_exists(database: Database, user_id: uuid.UUID) -> None:
    """Raise AccountGoneError if the account was deleted since its token was issued.

    The task routes call this only when their own statement found nothing: tasks reference
    their owner (ON DELETE CASCADE), so a statement that found or wrote an owner's row has
    already proved the owner exists, and the hot path needs no query of its own for it.
    """
    async with database.driver_connection() as connection:
        found = await connection.fetchval(
            "SELECT EXISTS (SELECT FROM users WHERE id = $1)", user_id
        )
    if not found:
        raise account_gone()


def account_gone() -> AccountGoneError:
    """The error for a verified token whose account no longer exists, logged once here."""
    logger.info("token_rejected", reason="unknown subject")
    return AccountGoneError()
