"""What the routes of an owner's versioned resources (tasks, lists) answer: bodies serialised
straight from the database rows, their ETags, replays of stored answers, and the OpenAPI
descriptions they share."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from fastapi import Request, Response, status
from pydantic import BaseModel

from app.http.conditional import version_etag
from app.http.errors import RETRY_AFTER_HEADER, ErrorBody, error_responses
from app.idempotency.replay import StoredResponse

logger = structlog.get_logger("app.http")

# Responses are serialised straight from the database rows, which carry the read schema's
# columns in its order and types: validating them again through pydantic would only rebuild
# what the database just checked. OPT_UTC_Z writes UTC as "Z", as pydantic does, so the bytes
# are the ones the schema would produce (tests compare the two).
_JSON_OPTIONS = orjson.OPT_UTC_Z


def _uuid_text(value: object) -> str:
    # asyncpg's UUID is a subclass of uuid.UUID, which orjson only writes for the exact type.
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"not serialisable: {type(value).__name__}")


def json_bytes(value: object) -> bytes:
    """Rows (as dicts) to JSON, as the read schemas write them."""
    return orjson.dumps(value, default=_uuid_text, option=_JSON_OPTIONS)


def stored_row(text: str, fields: Iterable[str], time_fields: Iterable[str]) -> dict[str, Any]:
    """A resource that PostgreSQL rendered as JSON (an idempotency key's response), as the
    driver would have returned it, so the route writes the same bytes: the same fields in the
    same order, times as UTC datetimes (PostgreSQL writes them in the session's zone). A field
    added by a later migration was not in the first answer either: null, not a 500."""
    stored = orjson.loads(text)
    row = {name: stored.get(name) for name in fields}
    for name in time_fields:
        if row[name] is not None:
            row[name] = datetime.fromisoformat(row[name]).astimezone(UTC)
    return row


class JSONBytesResponse(Response):
    """Bytes already serialised from the rows; `response_model` on each route documents them."""

    media_type = "application/json"


ETAG_HEADER = {"ETag": {"schema": {"type": "string"}, "description": 'The version, quoted: `"3"`'}}
REPLAYED_HEADER = {
    "Idempotent-Replayed": {
        "schema": {"type": "string", "enum": ["true"]},
        "description": "Present on the stored answer replayed for a retried Idempotency-Key",
    }
}
NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "If-None-Match matched: not modified, no body", "headers": ETAG_HEADER}
}
KEY_IN_USE: dict[int | str, dict[str, Any]] = {
    409: {
        "model": ErrorBody,
        "description": "idempotency_key_in_use: a request with this Idempotency-Key is still "
        "running; retry after Retry-After seconds",
        "headers": RETRY_AFTER_HEADER,
    }
}


def preconditions(conflict: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """412 with ``conflict`` (the resource as it is now) and 428."""
    return {
        412: {
            "model": conflict,
            "description": "version_conflict: If-Match names another version than the current one",
            "headers": ETAG_HEADER,
        },
        **error_responses(428),
    }


def written(status_code: int) -> dict[int | str, dict[str, Any]]:
    """A write's success (with its ETag and the replay marker) and the key's conflict."""
    headers: dict[str, Any] = {**REPLAYED_HEADER}
    if status_code != status.HTTP_204_NO_CONTENT:
        headers.update(ETAG_HEADER)
    return {status_code: {"headers": headers}, **KEY_IN_USE}


def versioned_response(
    body: bytes, version: int, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> JSONBytesResponse:
    return JSONBytesResponse(
        body, status_code=status_code, headers={"ETag": version_etag(version), **(headers or {})}
    )


def item_location(request: Request, collection: str, item_id: object) -> str:
    """The URL of ``item_id`` in ``collection`` (a path with the owner's canonical id, not the
    request's spelling of it); request.url_for would find the same URL by walking every route,
    a noticeable cost per create (bench/RESULTS.md)."""
    return f"{str(request.base_url).rstrip('/')}{collection}/{item_id}"


def replayed(
    stored: StoredResponse,
    request: Request,
    owner_id: uuid.UUID,
    *,
    collection: str,
    read: Callable[[str], Mapping[str, Any]],
    render: Callable[[Mapping[str, Any]], bytes],
) -> Response:
    """The first answer to this Idempotency-Key, again: same status, body, ETag and Location.
    ``read`` turns the stored body into a row, ``render`` the row into the route's bytes."""
    logger.info("idempotent_replay", user_id=str(owner_id), status=stored.status)
    headers = {"Idempotent-Replayed": "true"}
    if stored.body is None:
        return Response(status_code=stored.status, headers=headers)
    row = read(stored.body)
    if stored.status == status.HTTP_201_CREATED:
        headers["Location"] = item_location(request, collection, row["id"])
    return versioned_response(render(row), row["version"], stored.status, headers)


def page_etag(content: bytes, link: str | None) -> str:
    """A weak tag of what a page says: its items, and where the next page starts. SHA-256
    because OpenSSL computes it in a third of the time Python's own BLAKE2 takes
    (bench/RESULTS.md); 128 bits of it are plenty for a validator."""
    digest = hashlib.sha256(content)
    if link is not None:
        digest.update(link.encode())
    return f'W/"{digest.hexdigest()[:32]}"'
