"""Refresh tokens: ``<session id>.<generation>.<MAC>``, derived, never stored.

The MAC is HMAC-SHA256 over the session id, the generation and the session's random salt, under
a key derived from JWT_SECRET. The database keeps only the salt and the current generation, so
a dump alone cannot refresh, and the server can recompute the current token: concurrent tabs
that refresh with the same token inside the grace window all receive the same successor.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass, field

SALT_BYTES = 32
# A generation is a positive int4 in the table; the MAC is 32 bytes in unpadded base64url.
_TOKEN = re.compile(r"([0-9a-f]{32})\.([0-9]{1,10})\.([A-Za-z0-9_-]{43})")
MAX_GENERATION = 2**31 - 1


def new_salt() -> bytes:
    return secrets.token_bytes(SALT_BYTES)


@dataclass(frozen=True, slots=True)
class PresentedToken:
    """A token's parts as the client sent them; nothing about it is trusted until `verify`."""

    session_id: uuid.UUID
    generation: int
    mac: str


@dataclass(frozen=True)
class RefreshTokenKey:
    key: bytes = field(repr=False)

    @classmethod
    def from_secret(cls, jwt_secret: str) -> RefreshTokenKey:
        # A key of its own, so a refresh MAC can never be confused with a JWT signature.
        return cls(hmac.digest(jwt_secret.encode(), b"taskapi refresh token v1", "sha256"))

    def token(self, session_id: uuid.UUID, generation: int, salt: bytes) -> str:
        return f"{session_id.hex}.{generation}.{self._mac(session_id, generation, salt)}"

    def verify(self, presented: PresentedToken, salt: bytes) -> bool:
        expected = self._mac(presented.session_id, presented.generation, salt)
        return hmac.compare_digest(expected, presented.mac)

    def _mac(self, session_id: uuid.UUID, generation: int, salt: bytes) -> str:
        message = session_id.bytes + generation.to_bytes(4, "big") + salt
        digest = hmac.digest(self.key, message, hashlib.sha256)
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def parse(token: str) -> PresentedToken | None:
    """The parts of a well-formed token, or None for anything else (checked before any lookup,
    so garbage never reaches the database)."""
    match = _TOKEN.fullmatch(token)
    if match is None:
        return None
    generation = int(match[2])
    if generation > MAX_GENERATION:
        return None
    return PresentedToken(uuid.UUID(hex=match[1]), generation, match[3])
