"""What a write route reads from its request to be safe: If-Match and Idempotency-Key."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from app.http.conditional import Precondition
from app.http.errors import PreconditionRequiredError
from app.http.request_headers import IDEMPOTENCY_KEY, IF_MATCH, documented
from app.idempotency.keys import IdempotentRequest, parse_idempotency_key

# The headers of a write that changes an existing resource, and of one with no version to match
# (a create, emptying the trash), for the routes' `openapi_extra` (read by `safe_write`, not
# declared: http/request_headers.py).
CHANGE_HEADERS = documented(IF_MATCH, IDEMPOTENCY_KEY)
KEY_HEADERS = documented(IDEMPOTENCY_KEY)


@dataclass(frozen=True, slots=True)
class SafeWrite:
    precondition: Precondition | None = None
    idempotency: IdempotentRequest | None = None


_UNCONDITIONAL = SafeWrite()


async def safe_write(request: Request, *, changes_existing: bool = True, **path: str) -> SafeWrite:
    """The write's If-Match (428 when REQUIRE_IF_MATCH and ``changes_existing`` and it is
    absent; never read when it creates) and its Idempotency-Key, fingerprinted with the method,
    route, ``path`` and body."""
    precondition = None
    if changes_existing:
        if_match = IF_MATCH.read(request)
        if if_match is not None:
            precondition = Precondition.parse(if_match)
        elif request.app.state.require_if_match:
            raise PreconditionRequiredError()
    header = IDEMPOTENCY_KEY.read(request)
    if header is None:
        return _UNCONDITIONAL if precondition is None else SafeWrite(precondition=precondition)
    idempotency = IdempotentRequest.of(
        parse_idempotency_key(header),
        method=request.method,
        route=request.scope["route"].path,
        path=path,
        body=await request.body(),
    )
    return SafeWrite(precondition=precondition, idempotency=idempotency)
