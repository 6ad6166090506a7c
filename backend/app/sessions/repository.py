"""Sessions in the database: `SessionStore` reaches one by its id (from a login or a refresh
token, whose MAC proves it); `SessionRepository` is one user's view, bound to its owner like
TaskRepository, for the session list and ending sessions.
"""

from __future__ import annotations

import enum
import ipaddress
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from app.db.database import Database, Row
from app.sessions.errors import (
    InvalidRefreshTokenError,
    RefreshTokenReusedError,
    SessionNotFoundError,
)
from app.sessions.models import ADDRESS_MAX_LENGTH, USER_AGENT_MAX_LENGTH
from app.sessions.refresh_tokens import PresentedToken, RefreshTokenKey, new_salt
from app.sessions.statements import (
    END_OTHER_SESSIONS,
    END_OWN_SESSION,
    END_SESSION,
    GET_SALT,
    LIST_SESSIONS,
    LOCK_FOR_REFRESH,
    PURGE_USER_SESSIONS,
    ROTATE,
    START_SESSION,
    TOUCH,
)
from app.settings import Settings

logger = structlog.get_logger("app.sessions")


class EndReason(enum.StrEnum):
    LOGOUT = "logout"
    ENDED_BY_USER = "ended_by_user"
    PASSWORD_CHANGED = "password_changed"  # noqa: S105 (a reason, not a secret)
    REFRESH_TOKEN_REUSED = "refresh_token_reused"  # noqa: S105


@dataclass(frozen=True)
class SessionPolicy:
    lifetime: timedelta
    idle: timedelta
    grace: timedelta
    token_lifetime: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionPolicy:
        return cls(
            lifetime=timedelta(days=settings.session_lifetime_days),
            idle=timedelta(days=settings.session_idle_days),
            grace=timedelta(seconds=settings.refresh_reuse_grace_seconds),
            token_lifetime=timedelta(minutes=settings.jwt_expire_minutes),
        )


@dataclass(frozen=True)
class SessionGrant:
    """A session's current refresh token and whom it belongs to."""

    session_id: uuid.UUID
    user: Row | None  # the account's columns, on refresh (login has them already)
    refresh_token: str
    expires_at: datetime


class SessionStore:
    def __init__(self, database: Database, policy: SessionPolicy, key: RefreshTokenKey) -> None:
        self._database = database
        self._policy = policy
        self._key = key

    async def start(
        self,
        user_id: uuid.UUID,
        *,
        verified_hash: str,
        user_agent: str | None,
        address: str | None,
    ) -> SessionGrant | None:
        """A new session, and in the same transaction the user's sessions that are over; None
        if the account's password hash is no longer ``verified_hash`` (changed, or the account
        deleted, while the login verified the password)."""
        salt = new_salt()
        async with self._database.transaction() as tx:
            await tx.execute(
                PURGE_USER_SESSIONS,
                user_id=user_id,
                token_lifetime=self._policy.token_lifetime,
                idle=self._policy.idle,
            )
            row = await tx.fetch_one(
                START_SESSION,
                user_id=user_id,
                verified_hash=verified_hash,
                lifetime=self._policy.lifetime,
                refresh_salt=salt,
                user_agent=user_agent[:USER_AGENT_MAX_LENGTH] if user_agent else None,
                address=truncated_address(address),
            )
        if row is None:
            return None
        token = self._key.token(row["id"], 0, salt)
        return SessionGrant(row["id"], None, token, row["expires_at"])

    async def refresh(self, presented: PresentedToken) -> SessionGrant:
        """Rotate: the presented generation must be the current one (the next is issued) or,
        within the grace window, the one just replaced (the current one is issued again, so
        concurrent tabs end with the same token). Any other authentic token is a reuse: the
        session ends and RefreshTokenReusedError is raised."""
        policy = self._policy
        async with self._database.transaction() as tx:
            row = await tx.fetch_one(
                LOCK_FOR_REFRESH,
                session_id=presented.session_id,
                idle=policy.idle,
                grace=policy.grace,
            )
            if row is None or not self._key.verify(presented, row["refresh_salt"]):
                logger.info("refresh_rejected", reason="unknown or forged token")
                raise InvalidRefreshTokenError()
            user_fields = {"user_id": str(row["id"]), "session_id": str(presented.session_id)}
            if row["ended_at"] is not None or row["expired"] or row["idle_expired"]:
                reason = "session ended" if row["ended_at"] is not None else "session expired"
                logger.info("refresh_rejected", reason=reason, **user_fields)
                raise InvalidRefreshTokenError()
            current = row["refresh_generation"]
            if presented.generation == current:
                generation = await tx.fetch_value(ROTATE, session_id=presented.session_id)
            elif presented.generation == current - 1 and row["in_grace"]:
                generation = current
                await tx.execute(TOUCH, session_id=presented.session_id)
                logger.info("refresh_in_grace", **user_fields)
            else:
                await tx.execute(
                    END_SESSION,
                    session_id=presented.session_id,
                    reason=EndReason.REFRESH_TOKEN_REUSED,
                )
                logger.warning("refresh_token_reused", **user_fields)
                generation = None
        if generation is None:
            # Raised after the block, which committed the session's end.
            raise RefreshTokenReusedError()
        token = self._key.token(presented.session_id, generation, row["refresh_salt"])
        return SessionGrant(presented.session_id, row, token, row["expires_at"])

    async def end_by_token(self, presented: PresentedToken, reason: EndReason) -> None:
        """End the session of any authentic token of it (a spent one too: it proves the
        session, and presenting it to refresh would end the session anyway)."""
        row = await self._database.fetch_one(GET_SALT, session_id=presented.session_id)
        if (
            row is None
            or presented.generation > row["refresh_generation"]
            or not self._key.verify(presented, row["refresh_salt"])
        ):
            raise InvalidRefreshTokenError()
        await self._database.fetch_one(END_SESSION, session_id=presented.session_id, reason=reason)


class SessionRepository:
    """One user's sessions; every statement is bound to the owner given at construction."""

    def __init__(self, database: Database, owner_id: uuid.UUID, policy: SessionPolicy) -> None:
        self._database = database
        self._owner_id = owner_id
        self._policy = policy

    async def list(self) -> list[Row]:
        """The sessions still usable, the most recently used first."""
        return await self._database.fetch_all(
            LIST_SESSIONS, owner_id=self._owner_id, idle=self._policy.idle
        )

    async def end(
        self, session_id: uuid.UUID, reason: EndReason, *, missing_ok: bool = False
    ) -> None:
        """End one of the user's sessions. One that is missing, another user's or already
        ended is SessionNotFoundError (one answer for all three), or nothing with
        ``missing_ok`` (logout: ending an ended session is not an error)."""
        ended = await self._database.fetch_value(
            END_OWN_SESSION,
            owner_id=self._owner_id,
            session_id=session_id,
            reason=reason,
        )
        if ended is None and not missing_ok:
            raise SessionNotFoundError()

    async def end_others(self, current: uuid.UUID, reason: EndReason) -> None:
        await self._database.fetch_all(
            END_OTHER_SESSIONS, owner_id=self._owner_id, session_id=current, reason=reason
        )


def truncated_address(address: str | None) -> str | None:
    """The network of an address (IPv4 /24, IPv6 /48), or None if it is not an IP address."""
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    prefix = 24 if ip.version == 4 else 48
    network = ipaddress.ip_network(f"{ip}/{prefix}", strict=False)
    return str(network)[:ADDRESS_MAX_LENGTH]
