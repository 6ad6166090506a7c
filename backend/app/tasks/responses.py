"""What the task and trash routes answer: task bodies with their ETags, replays of stored
answers, and the OpenAPI descriptions they share."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from typing import Any

import structlog
from fastapi import Request, Response, status

from app.db.database import Row
from app.http.conditional import version_etag
from app.http.errors import RETRY_AFTER_HEADER, ErrorBody, error_responses
from app.idempotency.replay import StoredResponse
from app.tasks.pagination import Cursor
from app.tasks.repository import Task
from app.tasks.schemas import TaskRead, stored_task, task_json

logger = structlog.get_logger("app.tasks")

TASKS_PREFIX = "/api/{user_id}/tasks"


class TaskJSONResponse(Response):
    """Bytes already serialised from the rows (tasks/schemas.py); `response_model` on each
    route documents them."""

    media_type = "application/json"


class TaskVersionConflict(ErrorBody):
    """412 version_conflict: the task as it is now, so the client can merge without a GET."""

    current: TaskRead


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
PRECONDITIONS: dict[int | str, dict[str, Any]] = {
    412: {
        "model": TaskVersionConflict,
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


NOT_FOUND = error_responses(404)
WRITE_NOT_FOUND = error_responses(404, 413)
CHANGE = {**written(200), **PRECONDITIONS}


def task_response(
    task: Task, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> TaskJSONResponse:
    return TaskJSONResponse(
        task_json(task),
        status_code=status_code,
        headers={"ETag": version_etag(task["version"]), **(headers or {})},
    )


def location(request: Request, owner_id: uuid.UUID, task_id: object) -> str:
    # The owner's canonical id, not the path's spelling of it; request.url_for would find the
    # same URL by walking every route, a noticeable cost per create (bench/RESULTS.md).
    collection = TASKS_PREFIX.format(user_id=owner_id)
    return f"{str(request.base_url).rstrip('/')}{collection}/{task_id}"


def replay(stored: StoredResponse, request: Request, owner_id: uuid.UUID) -> Response:
    """The first answer to this Idempotency-Key, again: same status, body, ETag and Location."""
    logger.info("idempotent_replay", user_id=str(owner_id), status=stored.status)
    headers = {"Idempotent-Replayed": "true"}
    if stored.body is None:
        return Response(status_code=stored.status, headers=headers)
    task = stored_task(stored.body)
    if stored.status == status.HTTP_201_CREATED:
        headers["Location"] = location(request, owner_id, task["id"])
    return task_response(task, stored.status, headers)


def page_etag(content: bytes, link: str | None) -> str:
    """A weak tag of what the page says: its tasks, and where the next page starts. SHA-256
    because OpenSSL computes it in a third of the time Python's own BLAKE2 takes
    (bench/RESULTS.md); 128 bits of it are plenty for a validator."""
    digest = hashlib.sha256(content)
    if link is not None:
        digest.update(link.encode())
    return f'W/"{digest.hexdigest()[:32]}"'


def next_page(
    request: Request, rows: list[Row], limit: int, ordered_by: str
) -> tuple[list[Row], dict[str, str]]:
    """A keyset page read with ``limit + 1`` rows: the page, and when more remain a ``Link``
    header to the next one, whose cursor is the last row's (``ordered_by``, id)."""
    if len(rows) <= limit:
        return rows, {}
    page = rows[:limit]
    last = page[-1]
    cursor = Cursor(at=last[ordered_by], id=last["id"]).encode()
    return page, {"Link": f'<{request.url.include_query_params(cursor=cursor)}>; rel="next"'}
