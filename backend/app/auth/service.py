"""Sign-up and login: hashing, the user repository, the login limits and token issuing in one
place."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from app.auth.errors import InvalidCredentialsError, RateLimitedError
from app.auth.passwords import hash_password, verify_password
from app.auth.rate_limit import RateLimiter
from app.auth.repository import UserRepository
from app.auth.schemas import LoginRequest, SignupRequest, UserRead
from app.auth.tokens import IssuedToken, TokenCodec
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
        return await self.start_session(UserRead.from_row(row), client_address, user_agent)

    async def start_session(
        self, user: UserRead, client_address: str, user_agent: str | None
    ) -> Login:
        session = await self.sessions.start(user.id, user_agent=user_agent, address=client_address)
        return Login(user, self.tokens.issue(user.id, session.session_id), session)

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
        refusal = self.limiter.begin_login(request.email, client_address)
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
            self.limiter.login_failed(request.email)
            reason = "unknown email" if row is None else "wrong password"
            logger.info("login_failed", **user_field, reason=reason)
            raise InvalidCredentialsError()
        self.limiter.login_succeeded(request.email, client_address)
        return await self.start_session(UserRead.from_row(row), client_address, user_agent)
