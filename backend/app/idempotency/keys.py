"""The Idempotency-Key header (IETF httpapi draft) and the fingerprint of the request it names."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from app.idempotency.errors import InvalidIdempotencyKeyError
from app.idempotency.models import KEY_MAX_LENGTH

# The draft's form is a structured-field string ("..."); most clients send the key bare. Both
# are accepted and mean the same key: printable ASCII, 1-255 characters once unquoted.
_BARE = re.compile(rf"[\x20-\x7e]{{1,{KEY_MAX_LENGTH}}}")
_QUOTED = re.compile(r'"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"')
_ESCAPE = re.compile(r'\\(["\\])')


def parse_idempotency_key(header: str) -> str:
    value = header.strip(" \t")
    quoted = _QUOTED.fullmatch(value)
    if quoted is not None:
        value = _ESCAPE.sub(r"\1", quoted.group(1))
    if not _BARE.fullmatch(value) or value.strip(" ") == "":
        raise InvalidIdempotencyKeyError()
    return value


@dataclass(frozen=True, slots=True)
class IdempotentRequest:
    """A write sent with an Idempotency-Key: the key, and what the request was."""

    key: str
    fingerprint: bytes

    @classmethod
    def of(
        cls, key: str, *, method: str, route: str, path: Mapping[str, str], body: bytes
    ) -> IdempotentRequest:
        """The fingerprint covers the method, the route, its path parameters and the body as
        JSON (so a retry that spaces or orders its JSON differently is the same request)."""
        try:
            content: object = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            content = body.decode("latin-1")  # refused by validation anyway; keep it distinct
        canonical = orjson.dumps(
            [method, route, sorted(path.items()), content], option=orjson.OPT_SORT_KEYS
        )
        return cls(key=key, fingerprint=hashlib.sha256(canonical).digest())
