"""UserRepository against the real database: each method is one statement, committed when it
returns."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.errors import EmailTakenError, UserGoneError
from app.auth.repository import UserRepository
from app.db.database import Database


async def _stored(engine: AsyncEngine, email: str) -> list[tuple[object, ...]]:
    """The users with this email as committed, read on a connection of the test's own."""
    async with engine.connect() as connection:
        result = await connection.execute(
            text("SELECT id, email, password_hash, name FROM users WHERE email = :email"),
            {"email": email},
        )
        return [tuple(row) for row in result]


async def test_create_commits_and_returns_the_public_columns_with_database_defaults(
    database: Database, engine: AsyncEngine, clean_database: None
) -> None:
    user = await UserRepository(database).create(
        email="r@x.io", password_hash="$argon2id$fake", name="R"
    )

    assert isinstance(user["id"], uuid.UUID)
    assert user["created_at"] is not None
    assert list(user.keys()) == ["id", "email", "name", "created_at"]  # never the hash
    assert await _stored(engine, "r@x.io") == [(user["id"], "r@x.io", "$argon2id$fake", "R")]


async def test_create_with_a_taken_email_raises_email_taken_and_keeps_the_first(
    database: Database, engine: AsyncEngine, clean_database: None
) -> None:
    users = UserRepository(database)
    first = await users.create(email="dup@x.io", password_hash="h1", name=None)

    with pytest.raises(EmailTakenError):
        await users.create(email="dup@x.io", password_hash="h2", name="second")

    assert await _stored(engine, "dup@x.io") == [(first["id"], "dup@x.io", "h1", None)]
    stored = await users.get_credentials("dup@x.io")
    assert stored is not None
    assert (stored["id"], stored["password_hash"], stored["name"]) == (first["id"], "h1", None)


async def test_get_credentials_finds_the_user_and_returns_none_for_an_unknown_email(
    database: Database, clean_database: None
) -> None:
    users = UserRepository(database)
    created = await users.create(email="find@x.io", password_hash="h", name=None)

    found = await users.get_credentials("find@x.io")
    missing = await users.get_credentials("other@x.io")

    assert found is not None
    assert (found["id"], found["password_hash"]) == (created["id"], "h")
    assert missing is None


async def test_get_finds_the_user_by_id_and_returns_none_for_an_unknown_id(
    database: Database, clean_database: None
) -> None:
    users = UserRepository(database)
    created = await users.create(email="get@x.io", password_hash="h", name=None)

    found = await users.get(created["id"])

    assert found is not None
    assert (found["id"], found["email"]) == (created["id"], "get@x.io")
    assert list(found.keys()) == ["id", "email", "name", "created_at"]  # never the hash
    assert await users.get(uuid.uuid4()) is None


async def test_ensure_exists_passes_for_a_user_and_raises_user_gone_for_an_unknown_id(
    database: Database, clean_database: None
) -> None:
    users = UserRepository(database)
    created = await users.create(email="exists@x.io", password_hash="h", name=None)

    await users.ensure_exists(created["id"])
    with pytest.raises(UserGoneError):
        await users.ensure_exists(uuid.uuid4())
