from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.errors import EmailTakenError
from app.auth.models import User


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

    async def exists(self, user_id: uuid.UUID) -> bool:
        # The id alone: no ORM object is built for the check every request makes.
        return await self._session.scalar(select(User.id).where(User.id == user_id)) is not None

    async def get_by_email(self, email: str) -> User | None:
        return await self._session.scalar(select(User).where(User.email == email))

    async def end_read_only_transaction(self) -> None:
        """Return the connection to the pool before slow non-database work (argon2), so a
        login flood cannot hold every pooled connection while it waits for the hasher.
        Only for transactions that wrote nothing. (Commit, not rollback: with
        expire_on_commit=False the users already read stay loaded; a rollback would expire them.)
        """
        await self._session.commit()
