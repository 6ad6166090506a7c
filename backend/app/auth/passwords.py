"""Passwords: the sign-up policy, Unicode normalisation, and hashing (argon2id) off the event
loop, at most one hash per core at a time."""

from __future__ import annotations

import enum
import itertools
import os
import unicodedata

import anyio
import anyio.to_thread
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from zxcvbn.frequency_lists import FREQUENCY_LISTS

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128
# Shorter local parts ("al@...") are common substrings of any text: taking them out of a
# password would say nothing about it.
_EMAIL_LOCAL_PART_MIN_LENGTH = 3

# The 30,000 most frequent of the ten million leaked passwords Mark Burnett published (xato.net),
# lowercase, as zxcvbn ships them: the breach-corpus blocklist NIST SP 800-63B asks for.
COMMON_PASSWORDS = frozenset(FREQUENCY_LISTS["passwords"])


class Weakness(enum.Enum):
    """Why the sign-up policy refuses a password: (pydantic error type, the end of a sentence
    that begins with "Password")."""

    TOO_SHORT = ("string_too_short", f"must be at least {PASSWORD_MIN_LENGTH} characters long")
    EMAIL = ("password_email", "is too close to your email address; choose another")
    COMMON = ("password_common", "is too common; choose another")
    PATTERN = (
        "password_pattern",
        "is a simple pattern of repeated or consecutive characters; choose another",
    )

    @property
    def type(self) -> str:
        return self.value[0]

    @property
    def message(self) -> str:
        return self.value[1]


def normalise(password: str) -> str:
    """NFKC (NIST SP 800-63B 5.1.1.2): the same password typed with full-width letters, a
    ligature or a decomposed accent is the same password."""
    return unicodedata.normalize("NFKC", password)


def weakness(password: str, email: str | None = None) -> Weakness | None:
    """What the sign-up policy refuses in ``password`` (None if nothing): fewer than 8
    characters once normalised, the email or its local part with little else, a common
    password, or a run of repeated or consecutive characters. Case is ignored throughout."""
    normalised = normalise(password)
    if len(normalised) < PASSWORD_MIN_LENGTH:
        return Weakness.TOO_SHORT
    folded = normalised.casefold()
    if email is not None and _based_on_email(folded, email):
        return Weakness.EMAIL
    if folded in COMMON_PASSWORDS:
        return Weakness.COMMON
    if _is_simple_pattern(folded):
        return Weakness.PATTERN
    return None


def _based_on_email(folded: str, email: str) -> bool:
    """The password holds the (normalised) email or its local part, and without them what is
    left would be refused by itself: "ada@example.com", "ada12345", "adaada!!"."""
    local_part = email.rpartition("@")[0]
    remainder = folded.replace(email, "")
    if len(local_part) >= _EMAIL_LOCAL_PART_MIN_LENGTH:
        remainder = remainder.replace(local_part, "")
    if remainder == folded:
        return False
    return (
        len(remainder) < PASSWORD_MIN_LENGTH
        or remainder in COMMON_PASSWORDS
        or _is_simple_pattern(remainder)
    )


def _is_simple_pattern(text: str) -> bool:
    """A short piece repeated ("aaaaaaaa", "abcabcab") or at most two runs of repeated or
    consecutive characters ("12345678", "zyxwvuts", "abcd1234", "aaaa1111")."""
    if any(text[period:] == text[:-period] for period in range(1, len(text) // 2 + 1)):
        return True
    runs, step = 1, None
    for previous, current in itertools.pairwise(text):
        difference = ord(current) - ord(previous)
        if step is None and difference in (-1, 0, 1):
            step = difference
        elif difference != step:
            runs, step = runs + 1, None
    return runs <= 2


_password_hash = PasswordHash((Argon2Hasher(),))
# Verified against when the email is unknown, so both failures cost one argon2 verification.
_DUMMY_HASH = _password_hash.hash("timing-equaliser-not-a-real-password")

# argon2 is deliberately slow CPU work. It runs in threads (off the event loop), at most one
# per core: more threads would only take CPU time from the loop serving everyone
# else, so a login flood would slow /health and the task routes with it.
_hashing_slots = anyio.CapacityLimiter(os.cpu_count() or 1)


async def hash_password(password: str) -> str:
    """The hash of the normalised password."""
    return await anyio.to_thread.run_sync(
        _password_hash.hash, normalise(password), limiter=_hashing_slots
    )


async def verify_password(password: str, password_hash: str | None) -> bool:
    """Always the same verifications for a given password whether or not there is a user
    (against a dummy hash when there is none), so an unknown email costs what a wrong password
    costs.

    The normalised form first; then, if normalising changed the password, the form as typed:
    hashes stored before passwords were normalised hold that form.
    """
    stored = password_hash or _DUMMY_HASH
    normalised = normalise(password)
    matches = await _verify(normalised, stored)
    if not matches and normalised != password:
        matches = await _verify(password, stored)
    return matches and password_hash is not None


async def _verify(password: str, password_hash: str) -> bool:
    return await anyio.to_thread.run_sync(
        _password_hash.verify, password, password_hash, limiter=_hashing_slots
    )
