"""Who is calling: the current user from a verified bearer token, never from the client's word."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Annotated

import structlog
from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from app.auth.errors import (
    AccessTokenExpiredError,
    AuthenticationError,
    InvalidTokenError,
    RateLimitedError,
)
from app.auth.export import ExportSlots
from app.auth.rate_limit import RateLimiter
from app.auth.repository import UserRepository, user_gone
from app.auth.schemas import UserRead
from app.auth.service import AuthService
from app.auth.tokens import TokenClaims, TokenCodec, TokenError, TokenExpiredError
from app.db.database import Database
from app.db.deps import DatabaseDep
from app.http.errors import PermissionDeniedError
from app.sessions.deps import SessionStoreDep

logger = structlog.get_logger("app.auth")

# Every dependency here is `async def`, even without an await: FastAPI runs plain `def`
# dependencies in a thread pool, a thread hand-off per dependency per request.


async def get_token_codec(request: Request) -> TokenCodec:
    codec: TokenCodec = request.app.state.token_codec
    return codec


TokenCodecDep = Annotated[TokenCodec, Depends(get_token_codec)]


async def get_rate_limiter(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.rate_limiter
    return limiter


RateLimiterDep = Annotated[RateLimiter, Depends(get_rate_limiter)]


async def get_export_slots(request: Request) -> ExportSlots:
    slots: ExportSlots = request.app.state.export_slots
    return slots


ExportSlotsDep = Annotated[ExportSlots, Depends(get_export_slots)]


async def get_user_repository(database: DatabaseDep) -> UserRepository:
    return UserRepository(database)


UserRepoDep = Annotated[UserRepository, Depends(get_user_repository)]


def user_agent(request: Request) -> str | None:
    return request.headers.get("user-agent")


def client_address(request: Request) -> str:
    """The caller's address as uvicorn resolved it: the TCP peer, or its X-Forwarded-For when
    the peer is in FORWARDED_ALLOW_IPS (README "Client addresses behind a proxy"). Every log
    line of the request carries it already (the request observer binds it)."""
    return request.client.host if request.client else "unknown"


async def _count_attempt(request: Request, limiter: RateLimiter, refused_event: str) -> str:
    address = client_address(request)
    refusal = await limiter.hit_address(address)
    if refusal is not None:
        logger.info(refused_event, retry_after=refusal.retry_after, limit=refusal.limit)
        raise RateLimitedError(refusal.retry_after)
    return address


async def count_signup_attempt(request: Request, limiter: RateLimiterDep) -> None:
    """A signup counts against the caller's address in the same window as logins: signup says
    whether an email has an account, so probing emails must cost what guessing passwords does."""
    await _count_attempt(request, limiter, "signup_throttled")


async def count_login_attempt(request: Request, limiter: RateLimiterDep) -> str:
    """A login counts against the caller's address; the address, for the per-account limits."""
    return await _count_attempt(request, limiter, "login_throttled")


LoginAddress = Annotated[str, Depends(count_login_attempt)]


async def get_auth_service(
    users: UserRepoDep, tokens: TokenCodecDep, limiter: RateLimiterDep, sessions: SessionStoreDep
) -> AuthService:
    return AuthService(users=users, tokens=tokens, limiter=limiter, sessions=sessions)


AuthServiceDep = Annotated[AuthService, Depends(get_auth_service)]


class BearerTokenSubject(OAuth2PasswordBearer):
    """The verified subject of the bearer token (the account may no longer exist).

    One dependency that is also the OpenAPI security scheme (the /docs Authorize button). It
    reads only the Authorization header: a token in the query string is never looked at.
    """

    async def __call__(self, request: Request) -> uuid.UUID:  # type: ignore[override]
        return (await self.claims(request)).subject

    async def claims(self, request: Request) -> TokenClaims:
        token = await super().__call__(request)
        if not token:
            raise AuthenticationError()
        # Called, not declared, as in tasks/deps.py: this runs on every task request.
        codec = await get_token_codec(request)
        try:
            return codec.claims_of(token)
        except TokenExpiredError:
            raise AccessTokenExpiredError() from None
        except TokenError as exc:
            logger.info("token_rejected", reason=str(exc))
            raise InvalidTokenError() from None


# auto_error=False so a missing token gets our error body, not FastAPI's.
token_subject = BearerTokenSubject(
    tokenUrl="/api/auth/token", auto_error=False, scheme_name="OAuth2PasswordBearer"
)
TokenSubject = Annotated[uuid.UUID, Depends(token_subject)]


class BearerTokenClaims(BearerTokenSubject):
    """The bearer token's subject and session, for the routes that need to know which session
    is the caller's; the same security scheme."""

    async def __call__(self, request: Request) -> TokenClaims:  # type: ignore[override]
        return await self.claims(request)


token_claims = BearerTokenClaims(
    tokenUrl="/api/auth/token", auto_error=False, scheme_name="OAuth2PasswordBearer"
)
TokenClaimsDep = Annotated[TokenClaims, Depends(token_claims)]


@dataclass(frozen=True, slots=True)
class VerifiedBearer:
    """A verified bearer token, for a response that outlives its request (an event stream)
    and must stop when the token would no longer be accepted."""

    token: str = field(repr=False)  # never in a repr, a traceback's locals or a log line
    claims: TokenClaims
    codec: TokenCodec = field(repr=False)

    def still_accepted(self) -> bool:
        """Not expired, and its session not ended (the codec's cache answers: no decoding)."""
        try:
            self.codec.claims_of(self.token)
        except TokenError:
            return False
        return True


class BearerTokenVerified(BearerTokenSubject):
    """The bearer token itself with its claims; the same security scheme."""

    async def __call__(self, request: Request) -> VerifiedBearer:  # type: ignore[override]
        claims = await self.claims(request)
        token = await OAuth2PasswordBearer.__call__(self, request)
        assert token is not None  # claims() refused a missing one
        return VerifiedBearer(token, claims, await get_token_codec(request))


verified_bearer = BearerTokenVerified(
    tokenUrl="/api/auth/token", auto_error=False, scheme_name="OAuth2PasswordBearer"
)
VerifiedBearerDep = Annotated[VerifiedBearer, Depends(verified_bearer)]


async def get_current_user(subject: TokenSubject, users: UserRepoDep) -> UserRead:
    """The caller's account, in one query."""
    row = await users.get(subject)
    if row is None:
        # A valid signature is not enough: the account may have been deleted since.
        raise user_gone(subject)
    structlog.contextvars.bind_contextvars(user_id=str(subject))
    return UserRead.from_row(row)


CurrentUser = Annotated[UserRead, Depends(get_current_user)]


async def require_path_owner(database: Database, user_id: uuid.UUID, subject: uuid.UUID) -> None:
    """The ``{user_id}`` namespace in a path must be the caller's own (the token's subject).

    A plain function, not a dependency, for the domain routes' own dependency to call: each
    dependency FastAPI solves costs time on every request.

    No query here: that the account still exists is proved by the domain's statement itself
    (UserRepository.ensure_exists), so a deleted user's token still gets 401 with no round trip
    on the hot path. A refused namespace asks first, so that 401 still comes before 403.
    """
    if user_id != subject:
        await UserRepository(database).ensure_exists(subject)
        raise PermissionDeniedError()
    structlog.contextvars.bind_contextvars(user_id=str(subject))
