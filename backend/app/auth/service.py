"""Sign-up and login, and the account changes that ask for the password again: hashing, the
user repository, the login limits and token issuing in one place."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import NoReturn

import structlog
from fastapi.exceptions import RequestValidationError

from app.auth.errors import InvalidCredentialsError, RateLimitedError, WrongPasswordError
from app.auth.passwords import (
    PASSWORD_MIN_LENGTH,
    Weakness,
    hash_password,
    verify_password,
    weakness,
)
from app.auth.rate_limit import RateLimiter
from app.auth.repository import UserRepository, user_gone
from app.auth.schemas import LoginRequest, PasswordChangeRequest, SignupRequest, UserRead
from app.auth.tokens import IssuedToken, TokenClaims, TokenCodec
from app.db.database import Row
from app.sessions.repository import SessionGrant, SessionStore

logger = structlog.get_logger("app.auth")


@dataclass(frozen=True)
class Login:
    """A signed-in user: the account, a short access token, and the session it renews from."""

    user: UserRead
    access_token: IssuedToken
    session: SessionGrant


@dataclass(frozen=True)
class AuthService:
    users: UserRepository
    tokens: TokenCodec
    limiter: RateLimiter
    sessions: SessionStore

    async def sign_up(
        self, request: SignupRequest, client_address: str, user_agent: str | None
    ) -> Login:
        """A new account, signed in (the SPA saves a login round trip)."""
        password_hash = await hash_password(request.password)
        row = await self.users.create(
            email=request.email, password_hash=password_hash, name=request.name
        )
        return await self.start_session(
            UserRead.from_row(row), password_hash, client_address, user_agent
        )

    async def start_session(
        self, user: UserRead, password_hash: str, client_address: str, user_agent: str | None
    ) -> Login:
        """A session for ``user``, as long as the account's password hash is still the one
        just verified (or just stored, at signup)."""
        session = await self.sessions.start(
            user.id,
            verified_hash=password_hash,
            user_agent=user_agent,
            address=client_address,
        )
        if session is None:
            logger.info("login_failed", user_id=str(user.id), reason="password changed meanwhile")
            raise InvalidCredentialsError()
        access = self.tokens.issue(user.id, session.session_id, not_after=session.expires_at)
        return Login(user, access, session)

    async def log_in(
        self, request: LoginRequest, client_address: str, user_agent: str | None
    ) -> Login:
        """Security events name the account by its user id, never by the email."""
        # One statement, so its connection is back in the pool before argon2 runs: a login
        # flood cannot hold every pooled connection while it waits for the hasher. Read before
        # the limits are asked, so even a refused attempt's log line names the account.
        row = await self.users.get_credentials(request.email)
        user_field = {"user_id": str(row["id"])} if row else {}
        # Keyed on the email, not the row, so an unknown email is limited exactly like an
        # account and a 429 reveals no more than a 401.
        refusal = await self.limiter.begin_login(request.email, client_address)
        if refusal is not None:
            # client_address is on the line already: the request observer binds it.
            logger.info(
                "login_throttled",
                **user_field,
                retry_after=refusal.retry_after,
                limit=refusal.limit,
            )
            raise RateLimitedError(refusal.retry_after)
        # Always one argon2 verification, so an unknown email answers as slowly as a wrong
        # password and response times do not reveal which accounts exist.
        valid = await verify_password(request.password, row["password_hash"] if row else None)
        if row is None or not valid:
            await self.limiter.login_failed(request.email)
            reason = "unknown email" if row is None else "wrong password"
            logger.info("login_failed", **user_field, reason=reason)
            raise InvalidCredentialsError()
        await self.limiter.login_succeeded(request.email, client_address)
        return await self.start_session(
            UserRead.from_row(row), row["password_hash"], client_address, user_agent
        )

    async def change_password(
        self, claims: TokenClaims, request: PasswordChangeRequest, client_address: str
    ) -> None:
        """Replace the password and end every session but the caller's."""
        row = await self._account(claims.subject)
        # The sign-up policy, with the account's email; before the current password is
        # checked, so a refused choice costs no attempt against the limits.
        found = weakness(request.new_password, row["email"])
        if found is not None:
            raise _refused_new_password(found)
        await self._check_password(row, request.current_password, client_address, "change_password")
        password_hash = await hash_password(request.new_password)
        ended = await self.users.change_password(
            claims.subject,
            verified_hash=row["password_hash"],
            password_hash=password_hash,
            keep_session=claims.session_id,
        )
        if ended is None:
            await self._changed_meanwhile(claims.subject, "change_password")
        logger.info("password_changed", user_id=str(claims.subject), sessions_ended=len(ended))

    async def delete_account(self, user_id: uuid.UUID, password: str, client_address: str) -> None:
        """Delete the account, its tasks and its sessions."""
        row = await self._account(user_id)
        await self._check_password(row, password, client_address, "delete_account")
        if not await self.users.delete(user_id, verified_hash=row["password_hash"]):
            await self._changed_meanwhile(user_id, "delete_account")
        logger.info("account_deleted", user_id=str(user_id))

    async def _account(self, user_id: uuid.UUID) -> Row:
        row = await self.users.get_credentials_by_id(user_id)
        if row is None:
            raise user_gone(user_id)
        return row

    async def _check_password(
        self, row: Row, password: str, client_address: str, action: str
    ) -> None:
        """The password asked again before a sensitive change, counted against the same
        per-account limits as a login (the address was counted by the route's dependency), so
        a stolen access token does not buy unlimited guesses at the password."""
        email, user_id = row["email"], str(row["id"])
        refusal = await self.limiter.begin_login(email, client_address)
        if refusal is not None:
            logger.info(
                "password_check_throttled",
                user_id=user_id,
                action=action,
                retry_after=refusal.retry_after,
                limit=refusal.limit,
            )
            raise RateLimitedError(refusal.retry_after)
        if not await verify_password(password, row["password_hash"]):
            await self.limiter.login_failed(email)
            logger.info("password_check_failed", user_id=user_id, action=action)
            raise WrongPasswordError()
        await self.limiter.login_succeeded(email, client_address)

    async def _changed_meanwhile(self, user_id: uuid.UUID, action: str) -> NoReturn:
        """The account was deleted (401) or its password changed (403: the password given is
        no longer the current one) between the check and the write."""
        await self.users.ensure_exists(user_id)
        logger.info(
            "password_check_failed", user_id=str(user_id), action=action, reason="changed meanwhile"
        )
        raise WrongPasswordError()


def _refused_new_password(found: Weakness) -> RequestValidationError:
    """The 422 signup gives for the same password, at ``new_password``."""
    return RequestValidationError(
        [
            {
                "type": found.type,
                "loc": ("body", "new_password"),
                "msg": found.message,
                # What validation.py's sentence for string_too_short reads, as in signup.
                "ctx": {"min_length": PASSWORD_MIN_LENGTH},
            }
        ]
    )
