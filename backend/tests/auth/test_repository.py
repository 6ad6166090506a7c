"""UserRepository against the real database (it flushes; the test commits)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.errors import EmailTakenError
from app.auth.models import User
from app.auth.repository import UserRepository


async def test_create_returns_the_stored_user_with_database_defaults(
    db_session: AsyncSession,
) -> None:
    users = UserRepository(db_session)

    user = await users.create(email="r@x.io", password_hash="$argon2id$fake", name="R")
    await db_session.commit()

    assert isinstance(user.id, uuid.UUID)
    assert user.created_at is not None
    stored = await db_session.scalar(select(User).where(User.id == user.id))
    assert stored is not None
    assert (stored.email, stored.password_hash, stored.name) == ("r@x.io", "$argon2id$fake", "R")


async def test_create_with_a_taken_email_raises_email_taken_and_keeps_the_transaction_usable(
    db_session: AsyncSession,
) -> None:
    users = UserRepository(db_session)
    first = await users.create(email="dup@x.io", password_hash="h1", name=None)

    with pytest.raises(EmailTakenError):
        await users.create(email="dup@x.io", password_hash="h2", name="second")

    # ON CONFLICT DO NOTHING: no unique violation aborted the transaction.
    assert await db_session.scalar(select(func.count()).select_from(User)) == 1
    await db_session.commit()
    stored = await users.get_by_email("dup@x.io")
    assert stored is not None
    assert (stored.id, stored.password_hash, stored.name) == (first.id, "h1", None)


async def test_get_by_email_finds_the_user_and_returns_none_for_an_unknown_email(
    db_session: AsyncSession,
) -> None:
    users = UserRepository(db_session)
    created = await users.create(email="find@x.io", password_hash="h", name=None)
    await db_session.commit()
    db_session.expunge_all()

    found = await users.get_by_email("find@x.io")
    missing = await users.get_by_email("other@x.io")

    assert found is not None
    assert found.id == created.id
    assert missing is None


async def test_get_finds_the_user_by_id_and_returns_none_for_an_unknown_id(
    db_session: AsyncSession,
) -> None:
    users = UserRepository(db_session)
    created = await users.create(email="get@x.io", password_hash="h", name=None)
    await db_session.commit()
    db_session.expunge_all()  # read from the database, not the identity map

    found = await users.get(created.id)

    assert found is not None
    assert (found.id, found.email) == (created.id, "get@x.io")
    assert await users.get(uuid.uuid4()) is None
