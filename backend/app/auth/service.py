"""Sign-up and login: hashing, the user repository and token issuing in one place."""

from __future__ import annotations

from dataclasses import dataclass

from app.auth.models import User
from app.auth.repository import UserRepository
from app.auth.schemas import LoginRequest, SignupRequest
from app.core.errors import InvalidCredentialsError
from app.core.rate_limit import RateLimiter
from app.core.security import IssuedToken, TokenCodec, hash_password, verify_password


@dataclass(frozen=True)
class AuthService:
    users: UserRepository
    tokens: TokenCodec
    limiter: RateLimiter

    async def sign_up(self, request: SignupRequest) -> User:
        password_hash = await hash_password(request.password)
        return await self.users.create(
            email=request.email, password_hash=password_hash, name=request.name
        )

    async def log_in(self, request: LoginRequest) -> tuple[User, IssuedToken]:
        # Counted before the password: a locked account gets 429 even with the right one,
        # so guessing cannot continue past the limit.
        self.limiter.hit_account(request.email)
        user = await self.users.get_by_email(request.email)
        await self.users.end_read_only_transaction()
        # Always one argon2 verification, so an unknown email answers as slowly as a wrong
        # password and response times do not reveal which accounts exist.
        valid = await verify_password(request.password, user.password_hash if user else None)
        if user is None or not valid:
            raise InvalidCredentialsError()
        self.limiter.clear_failures(request.email)
        return user, self.tokens.issue(user.id)
