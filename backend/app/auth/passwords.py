"""Password hashing (argon2id), off the event loop and at most one hash per core at a time."""

from __future__ import annotations

import os

import anyio
import anyio.to_thread
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

_password_hash = PasswordHash((Argon2Hasher(),))
# Verified against when the email is unknown, so both failures cost one argon2 verification.
_DUMMY_HASH = _password_hash.hash("timing-equaliser-not-a-real-password")

# argon2 is deliberately slow CPU work. It runs in threads (off the event loop), at most one
# per core: more threads would only take CPU time from the loop serving everyone
# else, so a login flood would slow /health and the task routes with it.
_hashing_slots = anyio.CapacityLimiter(os.cpu_count() or 1)


async def hash_password(password: str) -> str:
    return await anyio.to_thread.run_sync(_password_hash.hash, password, limiter=_hashing_slots)


async def verify_password(password: str, password_hash: str | None) -> bool:
    """Always one verification, against a dummy hash when there is no user, so an unknown
    email costs what a wrong password costs."""
    matches = await anyio.to_thread.run_sync(
        _password_hash.verify, password, password_hash or _DUMMY_HASH, limiter=_hashing_slots
    )
    return matches and password_hash is not None
