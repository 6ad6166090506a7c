"""UserRepository: accounts, each method one compiled statement (so one transaction)."""

from __future__ import annotations

import uuid

import structlog

from app.auth.errors import EmailTakenError, UserGoneError
from app.auth.statements import CREATE_USER, GET_CREDENTIALS, GET_USER, USER_EXISTS
from app.db.database import Database, Row

logger = structlog.get_logger("app.auth")


class UserRepository:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def create(self, *, email: str, password_hash: str, name: str | None) -> Row:
        row = await self._database.fetch_one(
            CREATE_USER, email=email, password_hash=password_hash, name=name
        )
        if row is None:
            raise EmailTakenError()
        return row

    async def get(self, user_id: uuid.UUID) -> Row | None:
        return await self._database.fetch_one(GET_USER, user_id=user_id)

    async def get_credentials(self, email: str) -> Row | None:
        """The account with this (normalised) email and its password hash."""
        return await self._database.fetch_one(GET_CREDENTIALS, email=email)

    async def ensure_exists(self, user_id: uuid.UUID) -> None:
        """Raise UserGoneError if the user was deleted since their token was issued.

        The task routes ask only when their own statement found nothing: tasks reference
        their owner (ON DELETE CASCADE), so a statement that found or wrote an owner's row
        has already proved the owner exists, and the hot path needs no query of its own.
        """
        if not await self._database.fetch_value(USER_EXISTS, user_id=user_id):
            raise user_gone(user_id)


def user_gone(user_id: uuid.UUID) -> UserGoneError:
    """The error for a verified token whose user no longer exists, logged once here (the
    signature is valid, so the user id it names is worth logging)."""
    logger.info("token_rejected", reason="unknown subject", user_id=str(user_id))
    return UserGoneError()
