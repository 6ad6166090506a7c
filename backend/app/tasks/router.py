from __future__ import annotations

import uuid
from typing import Annotated

import structlog
from fastapi import APIRouter, Query, Request, Response, status
from pydantic import StringConstraints
from pydantic.json_schema import SkipJsonSchema

from app.http.errors import error_responses
from app.tasks.deps import TaskRepoDep
from app.tasks.pagination import CURSOR_PATTERN, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Cursor
from app.tasks.schemas import (
    TaskCreate,
    TaskList,
    TaskPatch,
    TaskRead,
    TaskUpdate,
    task_json,
    tasks_json,
)

logger = structlog.get_logger("app.tasks")


router = APIRouter(
    prefix="/api/{user_id}/tasks",
    tags=["tasks"],
    responses=error_responses(401, 403, 422, 503),
)
# Routes are tried in the order they are declared: the ones an SPA calls most come first.
NOT_FOUND = error_responses(404)
WRITE_NOT_FOUND = error_responses(404, 413)


class TaskJSONResponse(Response):
    """Bytes already serialised from the rows (tasks/schemas.py); `response_model` on each
    route documents them."""

    media_type = "application/json"


@router.get(
    "",
    response_model=TaskList,
    responses={
        200: {
            "description": 'Newest first. When more remain, a `Link: <url>; rel="next"` '
            "header carries the next page's URL.",
            "headers": {"Link": {"schema": {"type": "string"}, "description": "Next page"}},
        }
    },
)
async def list_tasks(
    request: Request,
    tasks: TaskRepoDep,
    # Optional, not nullable: absent means "no filter"; the schema offers no null to send.
    completed: Annotated[
        bool | SkipJsonSchema[None], Query(description="Only completed or open tasks")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    cursor: Annotated[
        Annotated[str, StringConstraints(pattern=CURSOR_PATTERN)] | SkipJsonSchema[None],
        Query(description="From the previous page's Link header"),
    ] = None,
) -> TaskJSONResponse:
    after = Cursor.decode(cursor) if cursor is not None else None
    page = await tasks.list(limit=limit + 1, completed=completed, after=after)
    headers = {}
    if len(page) > limit:
        page = page[:limit]
        last = page[-1]
        next_url = request.url.include_query_params(
            cursor=Cursor(created_at=last["created_at"], id=last["id"]).encode()
        )
        headers["Link"] = f'<{next_url}>; rel="next"'
    return TaskJSONResponse(tasks_json(page), headers=headers)


@router.get("/{task_id}", response_model=TaskRead, responses=NOT_FOUND)
async def get_task(task_id: uuid.UUID, tasks: TaskRepoDep) -> TaskJSONResponse:
    return TaskJSONResponse(task_json(await tasks.get(task_id)))


@router.patch("/{task_id}/complete", response_model=TaskRead, responses=NOT_FOUND)
async def toggle_task(task_id: uuid.UUID, tasks: TaskRepoDep) -> TaskJSONResponse:
    """Flip ``completed`` (atomically, in one statement)."""
    task = await tasks.toggle(task_id)
    logger.info(
        "task_toggled",
        user_id=str(tasks.owner_id),
        task_id=str(task_id),
        completed=task["completed"],
    )
    return TaskJSONResponse(task_json(task))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TaskRead,
    responses={
        201: {"headers": {"Location": {"schema": {"type": "string"}}}},
        **error_responses(413),
    },
)
async def create_task(body: TaskCreate, request: Request, tasks: TaskRepoDep) -> TaskJSONResponse:
    task = await tasks.create(title=body.title, description=body.description)
    task_id = str(task["id"])
    logger.info("task_created", user_id=str(tasks.owner_id), task_id=task_id)
    # The owner's canonical id, not the path's spelling of it; request.url_for would find the
    # same URL by walking every route, a noticeable cost per create (bench/RESULTS.md).
    collection = router.prefix.format(user_id=tasks.owner_id)
    location = f"{str(request.base_url).rstrip('/')}{collection}/{task_id}"
    return TaskJSONResponse(
        task_json(task), status_code=status.HTTP_201_CREATED, headers={"Location": location}
    )


@router.put("/{task_id}", response_model=TaskRead, responses=WRITE_NOT_FOUND)
async def replace_task(
    task_id: uuid.UUID, body: TaskUpdate, tasks: TaskRepoDep
) -> TaskJSONResponse:
    """Replace title (and description if given); ``completed`` is left as it is."""
    task = await tasks.update(task_id, **body.model_dump(exclude_unset=True))
    logger.info("task_updated", user_id=str(tasks.owner_id), task_id=str(task_id))
    return TaskJSONResponse(task_json(task))


@router.patch("/{task_id}", response_model=TaskRead, responses=WRITE_NOT_FOUND)
async def patch_task(task_id: uuid.UUID, body: TaskPatch, tasks: TaskRepoDep) -> TaskJSONResponse:
    """Change only the fields sent."""
    changes = body.model_dump(exclude_unset=True)
    task = await tasks.update(task_id, **changes)
    if changes:  # an empty PATCH changes (and logs) nothing
        logger.info("task_updated", user_id=str(tasks.owner_id), task_id=str(task_id))
    return TaskJSONResponse(task_json(task))


@router.delete("/{task_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
async def delete_task(task_id: uuid.UUID, tasks: TaskRepoDep) -> None:
    await tasks.delete(task_id)
    logger.info("task_deleted", user_id=str(tasks.owner_id), task_id=str(task_id))
