"""Access tokens: JWTs signed with the configured secret, each naming its session (``sid``), and
a cache of those already verified."""

from __future__ import annotations

import time
import uuid
from collections.abc import Container
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import jwt

from app.settings import Settings


class TokenError(Exception):
    """The token cannot be trusted; the message says why (for logs, not for clients)."""


class TokenExpiredError(TokenError):
    """A token that was good and has expired: the client should refresh, not log out."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    subject: uuid.UUID
    session_id: uuid.UUID


@dataclass(frozen=True)
class IssuedToken:
    value: str
    expires_in: int


@dataclass(frozen=True)
class TokenCodec:
    secret: str = field(repr=False)  # never in a repr, a traceback's locals or a log line
    algorithm: str
    lifetime: timedelta
    issuer: str | None = None
    audience: str | None = None
    # Tokens already verified, with their expiry: a client sends the same token on every
    # request, and decoding it again is a noticeable share of a request (bench/RESULTS.md).
    # Keyed by the whole token, signature included, so only a byte-identical copy of a token
    # that passed every check can hit; a hit is re-checked against ``exp``.
    verified_cache_size: int = 10_000
    # Sessions ended before their tokens expire (sessions/revocations.py): looked up on every
    # request, cached token or not, so an ended session's tokens stop working at once.
    revoked: Container[uuid.UUID] = field(default_factory=frozenset, repr=False, compare=False)
    _verified: dict[str, tuple[TokenClaims, float]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @classmethod
    def from_settings(
        cls, settings: Settings, revoked: Container[uuid.UUID] = frozenset()
    ) -> TokenCodec:
        if settings.jwt_secret is None:
            raise RuntimeError("JWT_SECRET is not configured")
        return cls(
            secret=settings.jwt_secret.get_secret_value(),
            algorithm=settings.jwt_algorithm,
            lifetime=timedelta(minutes=settings.jwt_expire_minutes),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            revoked=revoked,
        )

    def issue(
        self, subject: uuid.UUID, session_id: uuid.UUID, *, not_after: datetime | None = None
    ) -> IssuedToken:
        """A token for ``subject`` in ``session_id``; it expires after the lifetime, or at
        ``not_after`` (the session's own end) if that comes first."""
        now = datetime.now(UTC)
        expires = now + self.lifetime if not_after is None else min(now + self.lifetime, not_after)
        claims: dict[str, object] = {
            "sub": str(subject),
            "sid": str(session_id),
            "iat": now,
            "exp": expires,
        }
        if self.issuer:
            claims["iss"] = self.issuer
        if self.audience:
            claims["aud"] = self.audience
        token = jwt.encode(claims, self.secret, algorithm=self.algorithm)
        return IssuedToken(value=token, expires_in=max(1, round((expires - now).total_seconds())))

    def subject_of(self, token: str) -> uuid.UUID:
        return self.claims_of(token).subject

    def claims_of(self, token: str) -> TokenClaims:
        """The verified claims. Only the configured algorithm is accepted (never ``none``);
        an expired token raises TokenExpiredError, a token of an ended session TokenError."""
        cached = self._verified.get(token)
        if cached is not None:
            claims, expires_at = cached
            if time.time() >= expires_at:  # PyJWT's rule: expired from the second of `exp` on
                del self._verified[token]
                raise TokenExpiredError("ExpiredSignatureError")
        else:
            claims, expires_at = self._verify(token)
            if len(self._verified) >= self.verified_cache_size:
                del self._verified[next(iter(self._verified))]  # the oldest entry
            self._verified[token] = (claims, expires_at)
        if claims.session_id in self.revoked:
            raise TokenError("session ended")
        return claims

    def _verify(self, token: str) -> tuple[TokenClaims, float]:
        try:
            claims = jwt.decode(
                token,
                self.secret,
                algorithms=[self.algorithm],
                issuer=self.issuer,
                audience=self.audience,
                options={
                    "require": ["sub", "sid", "exp", "iat"],
                    "verify_aud": bool(self.audience),
                },
            )
        except jwt.ExpiredSignatureError:
            raise TokenExpiredError("ExpiredSignatureError") from None
        except jwt.PyJWTError as exc:
            raise TokenError(type(exc).__name__) from None
        try:
            subject = uuid.UUID(str(claims["sub"]))
            session_id = uuid.UUID(str(claims["sid"]))
        except ValueError:
            raise TokenError("sub or sid is not a UUID") from None
        return TokenClaims(subject, session_id), int(claims["exp"])  # as PyJWT compares it
