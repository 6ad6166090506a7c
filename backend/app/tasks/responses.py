"""What the task and trash routes answer: task bodies with their ETags, replays of stored
answers, and the OpenAPI descriptions they share (the generic parts: http/resources.py)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from fastapi import Request, Response

from app.db.database import Row
from app.http.errors import ErrorBody, error_responses
from app.http.resources import (
    JSONBytesResponse,
    item_location,
    preconditions,
    replayed,
    versioned_response,
    written,
)
from app.idempotency.replay import StoredResponse
from app.tasks.pagination import Cursor
from app.tasks.repository import Task
from app.tasks.schemas import TaskRead, stored_task, task_json

TASKS_PREFIX = "/api/{user_id}/tasks"


class TaskVersionConflict(ErrorBody):
    """412 version_conflict: the task as it is now, so the client can merge without a GET."""

    current: TaskRead


PRECONDITIONS = preconditions(TaskVersionConflict)
NOT_FOUND = error_responses(404)
WRITE_NOT_FOUND = error_responses(404, 413)
CHANGE = {**written(200), **PRECONDITIONS}


def task_response(
    task: Task, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> JSONBytesResponse:
    return versioned_response(task_json(task), task["version"], status_code, headers)


def location(request: Request, owner_id: uuid.UUID, task_id: object) -> str:
    return item_location(request, TASKS_PREFIX.format(user_id=owner_id), task_id)


def replay(stored: StoredResponse, request: Request, owner_id: uuid.UUID) -> Response:
    """The first answer to this Idempotency-Key, again: same status, body, ETag and Location."""
    return replayed(
        stored,
        request,
        owner_id,
        collection=TASKS_PREFIX.format(user_id=owner_id),
        read=stored_task,
        render=task_json,
    )


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
