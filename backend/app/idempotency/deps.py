"""What a write route reads from its request to be safe: If-Match and Idempotency-Key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Header, Request
from pydantic.json_schema import SkipJsonSchema

from app.http.conditional import Precondition
from app.http.errors import PreconditionRequiredError
from app.idempotency.keys import IdempotentRequest, parse_idempotency_key

# Plain header parameters, parsed by the functions below rather than by pydantic, so that a
# bad value gets a message that says what the header must look like.
IfMatchHeader = Annotated[
    str | SkipJsonSchema[None],
    Header(
        description='The version this write changes, as its ETag (`"3"`), or `*` for any: '
        "a stale one answers 412 with the current task"
    ),
]
IdempotencyKeyHeader = Annotated[
    str | SkipJsonSchema[None],
    Header(
        description="1-255 printable ASCII characters, unique per intended write (a UUID): a "
        "retry with the same key and request replays the first answer instead of writing again"
    ),
]


@dataclass(frozen=True, slots=True)
class SafeWrite:
    precondition: Precondition | None = None
    idempotency: IdempotentRequest | None = None


async def safe_write(
    request: Request,
    if_match: str | None,
    idempotency_key: str | None,
    *,
    changes_existing: bool = True,
    **path: str,
) -> SafeWrite:
    """The write's If-Match (428 when REQUIRE_IF_MATCH and ``changes_existing`` and it is
    absent) and its key, fingerprinted with the method, route, ``path`` and body."""
    precondition = None
    if if_match is not None:
        precondition = Precondition.parse(if_match)
    elif changes_existing and request.app.state.require_if_match:
        raise PreconditionRequiredError()
    if idempotency_key is None:
        return SafeWrite(precondition=precondition)
    key = parse_idempotency_key(idempotency_key)
    idempotency = IdempotentRequest.of(
        key,
        method=request.method,
        route=request.scope["route"].path,
        path=path,
        body=await request.body(),
    )
    return SafeWrite(precondition=precondition, idempotency=idempotency)
