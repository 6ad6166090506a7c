"""Request headers a route reads from the request itself instead of declaring as parameters.

A declared FastAPI `Header` parameter costs its route, on every request and even when the
header is absent, a search of the headers and a pydantic validation of a plain string
(bench/RESULTS.md). The headers here are parsed by their own code anyway, which says what a bad
value must look like, so a route reads them with `RequestHeader.read` and publishes them in the
OpenAPI document with `documented`, as FastAPI would have.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request


@dataclass(frozen=True, slots=True)
class RequestHeader:
    name: str
    description: str

    def read(self, request: Request) -> str | None:
        return request.headers.get(self.name)

    def parameter(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": self.description,
        }


def documented(*headers: RequestHeader) -> dict[str, Any]:
    """A route's `openapi_extra` for the optional ``headers`` it reads."""
    return {"parameters": [header.parameter() for header in headers]}


IF_MATCH = RequestHeader(
    "If-Match",
    'The version this write changes, as its ETag (`"3"`), or `*` for any: a stale one answers '
    "412 with the current task",
)
IF_NONE_MATCH = RequestHeader(
    "If-None-Match", "ETags the client holds: a match answers 304 without a body"
)
IDEMPOTENCY_KEY = RequestHeader(
    "Idempotency-Key",
    "1-255 printable ASCII characters, unique per intended write (a UUID): a retry with the "
    "same key and request replays the first answer instead of writing again",
)
