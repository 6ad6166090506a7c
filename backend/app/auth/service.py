"""Sign-up and login: hashing, the user repository and token issuing in one place."""

from __future__ import annotations

from dataclasses import dataclass

from app.auth.errors import InvalidCredentialsError
from app.auth.passwords import hash_password, verify_password
from app.auth.rate_limit import RateLimiter
from app.auth.repository import UserRepository
from app.auth.schemas import LoginRequest, SignupRequest, UserRead
from app.auth.tokens import IssuedToken, TokenCodec


@dataclass(frozen=True)
class AuthService:
    users: UserRepository
    tokens: TokenCodec
    limiter: RateLimiter

    async def sign_up(self, request: SignupRequest) -> UserRead:
        password_hash = await hash_password(request.password)
        row = await self.users.create(
            email=request.email, password_hash=password_hash, name=request.name
        )
        return UserRead.from_row(row)

    async def log_in(self, request: LoginRequest) -> tuple[UserRead, IssuedToken]:
        # Counted before the password: a locked account gets 429 even with the right one,
        # so guessing cannot continue past the limit.
        self.limiter.hit_account(request.email)
        # One statement, so its connection is back in the pool before argon2 runs: a login
        # flood cannot hold every pooled connection while it waits for the hasher.
        row = await self.users.get_credentials(request.email)
        # Always one argon2 verification, so an unknown email answers as slowly as a wrong
        # password and response times do not reveal which accounts exist.
        valid = await verify_password(request.password, row["password_hash"] if row else None)
        if row is None or not valid:
            raise InvalidCredentialsError()
        self.limiter.clear_failures(request.email)
        user = UserRead.from_row(row)
        return user, self.tokens.issue(user.id)
