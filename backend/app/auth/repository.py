"""UserRepository: accounts, each method one compiled statement (so one transaction), but the
password change, which ends the other sessions in the same transaction."""

from __future__ import annotations

import uuid

import structlog

from app.auth.errors import EmailTakenError, UserGoneError
from app.auth.statements import (
    CHANGE_PASSWORD,
    CREATE_USER,
    DELETE_USER,
    GET_CREDENTIALS,
    GET_CREDENTIALS_BY_ID,
    GET_USER,
    USER_EXISTS,
)
from app.db.database import Database, Row
from app.sessions.repository import EndReason
from app.sessions.statements import END_OTHER_SESSIONS

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

    async def get_credentials_by_id(self, user_id: uuid.UUID) -> Row | None:
        """The caller's account and its password hash, to ask for the password again."""
        return await self._database.fetch_one(GET_CREDENTIALS_BY_ID, user_id=user_id)

    async def change_password(
        self,
        user_id: uuid.UUID,
        *,
        verified_hash: str,
        password_hash: str,
        keep_session: uuid.UUID,
    ) -> list[uuid.UUID] | None:
        """Store the new hash and end every session of the user but ``keep_session``, in one
        transaction: a password change never commits with the old sessions still open. The
        sessions it ended, or None (nothing changed) if the stored hash is no longer
        ``verified_hash`` or the account is gone."""
        async with self._database.transaction() as tx:
            changed = await tx.fetch_value(
                CHANGE_PASSWORD,
                user_id=user_id,
                verified_hash=verified_hash,
                password_hash=password_hash,
            )
            if changed is None:
                return None
            ended = await tx.fetch_all(
                END_OTHER_SESSIONS,
                owner_id=user_id,
                session_id=keep_session,
                reason=EndReason.PASSWORD_CHANGED,
            )
        return [row["id"] for row in ended]

    async def delete(self, user_id: uuid.UUID, *, verified_hash: str) -> bool:
        """Delete the account with its tasks and sessions; False (nothing deleted) if the
        stored hash is no longer ``verified_hash`` or the account is gone."""
        deleted = await self._database.fetch_value(
            DELETE_USER, user_id=user_id, verified_hash=verified_hash
        )
        return deleted is not None

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
