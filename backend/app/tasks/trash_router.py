"""The trash: tasks a DELETE moved there, listed, restored, or deleted for good.

A trashed task keeps its id (a create with it is 409 task_exists) and its versions: restoring it
is a change like any other, under If-Match and an Idempotency-Key.
"""

from __future__ import annotations

import uuid

import structlog
from fastapi import APIRouter, Request, Response, status

from app.http.errors import error_responses
from app.http.resources import JSONBytesResponse, written
from app.idempotency.deps import CHANGE_HEADERS, KEY_HEADERS, safe_write
from app.idempotency.replay import StoredResponse
from app.tasks.deps import TaskRepoDep
from app.tasks.pagination import DEFAULT_PAGE_SIZE, Cursor, PageCursor, PageLimit
from app.tasks.responses import (
    CHANGE,
    NOT_FOUND,
    PRECONDITIONS,
    next_page,
    replay,
    task_response,
)
from app.tasks.schemas import TaskRead, TrashList, tasks_json

logger = structlog.get_logger("app.tasks")

router = APIRouter(
    prefix="/api/{user_id}/trash",
    tags=["trash"],
    responses=error_responses(401, 403, 422, 503),
)


@router.get(
    "",
    response_model=TrashList,
    responses={
        200: {
            "description": "Most recently deleted first. When more remain, a "
            '`Link: <url>; rel="next"` header carries the next page\'s URL.',
            "headers": {"Link": {"schema": {"type": "string"}, "description": "Next page"}},
        }
    },
)
async def list_trash(
    request: Request,
    tasks: TaskRepoDep,
    limit: PageLimit = DEFAULT_PAGE_SIZE,
    cursor: PageCursor = None,
) -> Response:
    after = Cursor.decode(cursor) if cursor is not None else None
    rows = await tasks.list_trash(limit=limit + 1, after=after)
    page, headers = next_page(request, rows, limit, "deleted_at")
    return JSONBytesResponse(tasks_json(page), headers=headers)


@router.post(
    "/{task_id}/restore",
    response_model=TaskRead,
    responses={**CHANGE, **NOT_FOUND},
    openapi_extra=CHANGE_HEADERS,
)
async def restore_task(task_id: uuid.UUID, request: Request, tasks: TaskRepoDep) -> Response:
    """Back among the tasks, as it was, with a new version; 404 when it is not in the trash."""
    write = await safe_write(request, task_id=str(task_id))
    task = await tasks.restore(
        task_id, precondition=write.precondition, idempotency=write.idempotency
    )
    if isinstance(task, StoredResponse):
        return replay(task, request, tasks.owner_id)
    logger.info("task_restored", user_id=str(tasks.owner_id), task_id=str(task_id))
    return task_response(task)


@router.delete(
    "/{task_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**written(204), **PRECONDITIONS, **NOT_FOUND},
    openapi_extra=CHANGE_HEADERS,
)
async def purge_task(task_id: uuid.UUID, request: Request, tasks: TaskRepoDep) -> Response:
    """Delete a trashed task for good; 404 when it is not in the trash."""
    write = await safe_write(request, task_id=str(task_id))
    stored = await tasks.purge(
        task_id, precondition=write.precondition, idempotency=write.idempotency
    )
    if stored is not None:
        return replay(stored, request, tasks.owner_id)
    logger.info("task_purged", user_id=str(tasks.owner_id), task_id=str(task_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete(
    "",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=written(204),
    openapi_extra=KEY_HEADERS,
)
async def empty_trash(request: Request, tasks: TaskRepoDep) -> Response:
    """Delete every trashed task for good (also when the trash is empty)."""
    write = await safe_write(request, changes_existing=False)
    stored = await tasks.empty_trash(idempotency=write.idempotency)
    if stored is not None:
        return replay(stored, request, tasks.owner_id)
    logger.info("trash_emptied", user_id=str(tasks.owner_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
