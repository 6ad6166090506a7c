from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Query, Request, Response, status
from pydantic import StringConstraints
from pydantic.json_schema import SkipJsonSchema

from app.http.conditional import none_match, version_etag
from app.http.errors import RETRY_AFTER_HEADER, ErrorBody, error_responses
from app.http.request_headers import IF_NONE_MATCH, documented
from app.idempotency.deps import CHANGE_HEADERS, CREATE_HEADERS, safe_write
from app.idempotency.replay import StoredResponse
from app.tasks.deps import TaskRepoDep
from app.tasks.pagination import CURSOR_PATTERN, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Cursor
from app.tasks.repository import Task
from app.tasks.schemas import (
    TaskCreate,
    TaskList,
    TaskPatch,
    TaskRead,
    TaskUpdate,
    stored_task,
    task_json,
    tasks_json,
)

logger = structlog.get_logger("app.tasks")


router = APIRouter(
    prefix="/api/{user_id}/tasks",
    tags=["tasks"],
    responses=error_responses(401, 403, 422, 503),
)


class TaskJSONResponse(Response):
    """Bytes already serialised from the rows (tasks/schemas.py); `response_model` on each
    route documents them."""

    media_type = "application/json"


class TaskVersionConflict(ErrorBody):
    """412 version_conflict: the task as it is now, so the client can merge without a GET."""

    current: TaskRead


CONDITIONAL_READ_HEADERS = documented(IF_NONE_MATCH)
_ETAG = {"ETag": {"schema": {"type": "string"}, "description": 'The version, quoted: `"3"`'}}
_REPLAYED = {
    "Idempotent-Replayed": {
        "schema": {"type": "string", "enum": ["true"]},
        "description": "Present on the stored answer replayed for a retried Idempotency-Key",
    }
}
_NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "If-None-Match matched: not modified, no body", "headers": _ETAG}
}
_KEY_IN_USE: dict[int | str, dict[str, Any]] = {
    409: {
        "model": ErrorBody,
        "description": "idempotency_key_in_use: a request with this Idempotency-Key is still "
        "running; retry after Retry-After seconds",
        "headers": RETRY_AFTER_HEADER,
    }
}
_PRECONDITIONS: dict[int | str, dict[str, Any]] = {
    412: {
        "model": TaskVersionConflict,
        "description": "version_conflict: If-Match names another version than the current one",
        "headers": _ETAG,
    },
    **error_responses(428),
}


def _written(status_code: int) -> dict[int | str, dict[str, Any]]:
    """A write's success (with its ETag and the replay marker) and the key's conflict."""
    headers: dict[str, Any] = {**_REPLAYED}
    if status_code != status.HTTP_204_NO_CONTENT:
        headers.update(_ETAG)
    return {status_code: {"headers": headers}, **_KEY_IN_USE}


# Routes are tried in the order they are declared: the ones an SPA calls most come first.
NOT_FOUND = error_responses(404)
WRITE_NOT_FOUND = error_responses(404, 413)
CHANGE = {**_written(200), **_PRECONDITIONS}


def _task_response(
    task: Task, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> TaskJSONResponse:
    return TaskJSONResponse(
        task_json(task),
        status_code=status_code,
        headers={"ETag": version_etag(task["version"]), **(headers or {})},
    )


def _location(request: Request, owner_id: uuid.UUID, task_id: object) -> str:
    # The owner's canonical id, not the path's spelling of it; request.url_for would find the
    # same URL by walking every route, a noticeable cost per create (bench/RESULTS.md).
    collection = router.prefix.format(user_id=owner_id)
    return f"{str(request.base_url).rstrip('/')}{collection}/{task_id}"


def _replay(stored: StoredResponse, request: Request, owner_id: uuid.UUID) -> Response:
    """The first answer to this Idempotency-Key, again: same status, body, ETag and Location."""
    logger.info("idempotent_replay", user_id=str(owner_id), status=stored.status)
    headers = {"Idempotent-Replayed": "true"}
    if stored.body is None:
        return Response(status_code=stored.status, headers=headers)
    task = stored_task(stored.body)
    if stored.status == status.HTTP_201_CREATED:
        headers["Location"] = _location(request, owner_id, task["id"])
    return _task_response(task, stored.status, headers)


def _page_etag(content: bytes, link: str | None) -> str:
    """A weak tag of what the page says: its tasks, and where the next page starts. SHA-256
    because OpenSSL computes it in a third of the time Python's own BLAKE2 takes
    (bench/RESULTS.md); 128 bits of it are plenty for a validator."""
    digest = hashlib.sha256(content)
    if link is not None:
        digest.update(link.encode())
    return f'W/"{digest.hexdigest()[:32]}"'


@router.get(
    "",
    response_model=TaskList,
    responses={
        200: {
            "description": 'Newest first. When more remain, a `Link: <url>; rel="next"` '
            "header carries the next page's URL.",
            "headers": {
                "Link": {"schema": {"type": "string"}, "description": "Next page"},
                "ETag": {"schema": {"type": "string"}, "description": "A weak tag of the page"},
            },
        },
        **_NOT_MODIFIED,
    },
    openapi_extra=CONDITIONAL_READ_HEADERS,
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
) -> Response:
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
    content = tasks_json(page)
    headers["ETag"] = _page_etag(content, headers.get("Link"))
    if_none_match = IF_NONE_MATCH.read(request)
    if if_none_match is not None and none_match(if_none_match, headers["ETag"]):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return TaskJSONResponse(content, headers=headers)


@router.get(
    "/{task_id}",
    response_model=TaskRead,
    responses={200: {"headers": _ETAG}, **_NOT_MODIFIED, **NOT_FOUND},
    openapi_extra=CONDITIONAL_READ_HEADERS,
)
async def get_task(task_id: uuid.UUID, request: Request, tasks: TaskRepoDep) -> Response:
    task = await tasks.get(task_id)
    etag = version_etag(task["version"])
    if_none_match = IF_NONE_MATCH.read(request)
    if if_none_match is not None and none_match(if_none_match, etag):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag})
    return TaskJSONResponse(task_json(task), headers={"ETag": etag})


@router.patch(
    "/{task_id}/complete",
    response_model=TaskRead,
    responses={**CHANGE, **NOT_FOUND},
    openapi_extra=CHANGE_HEADERS,
)
async def toggle_task(
    task_id: uuid.UUID,
    request: Request,
    tasks: TaskRepoDep,
) -> Response:
    """Flip ``completed`` (atomically, in one statement)."""
    write = await safe_write(request, task_id=str(task_id))
    task = await tasks.toggle(
        task_id, precondition=write.precondition, idempotency=write.idempotency
    )
    if isinstance(task, StoredResponse):
        return _replay(task, request, tasks.owner_id)
    logger.info(
        "task_toggled",
        user_id=str(tasks.owner_id),
        task_id=str(task_id),
        completed=task["completed"],
    )
    return _task_response(task)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TaskRead,
    responses={
        **_written(201),
        201: {
            "headers": {
                **_written(201)[201]["headers"],
                "Location": {"schema": {"type": "string"}},
            }
        },
        **error_responses(
            409,
            413,
            descriptions={
                409: "task_exists: the chosen id is taken; idempotency_key_in_use: a request "
                "with this Idempotency-Key is still running (retry after Retry-After seconds)"
            },
        ),
    },
    openapi_extra=CREATE_HEADERS,
)
async def create_task(
    body: TaskCreate,
    request: Request,
    tasks: TaskRepoDep,
) -> Response:
    """A client may choose the id (an offline client refers to it before it syncs): an id
    already taken answers 409 ``task_exists``, unless the same Idempotency-Key replays."""
    write = await safe_write(request, changes_existing=False)
    task = await tasks.create(
        title=body.title,
        description=body.description,
        task_id=body.id,
        idempotency=write.idempotency,
    )
    if isinstance(task, StoredResponse):
        return _replay(task, request, tasks.owner_id)
    task_id = str(task["id"])
    logger.info("task_created", user_id=str(tasks.owner_id), task_id=task_id)
    return _task_response(
        task,
        status.HTTP_201_CREATED,
        headers={"Location": _location(request, tasks.owner_id, task_id)},
    )


@router.put(
    "/{task_id}",
    response_model=TaskRead,
    responses={**CHANGE, **WRITE_NOT_FOUND},
    openapi_extra=CHANGE_HEADERS,
)
async def replace_task(
    task_id: uuid.UUID,
    body: TaskUpdate,
    request: Request,
    tasks: TaskRepoDep,
) -> Response:
    """Replace title (and description if given); ``completed`` is left as it is."""
    write = await safe_write(request, task_id=str(task_id))
    task = await tasks.update(
        task_id,
        precondition=write.precondition,
        idempotency=write.idempotency,
        **body.model_dump(exclude_unset=True),
    )
    if isinstance(task, StoredResponse):
        return _replay(task, request, tasks.owner_id)
    logger.info("task_updated", user_id=str(tasks.owner_id), task_id=str(task_id))
    return _task_response(task)


@router.patch(
    "/{task_id}",
    response_model=TaskRead,
    responses={**CHANGE, **WRITE_NOT_FOUND},
    openapi_extra=CHANGE_HEADERS,
)
async def patch_task(
    task_id: uuid.UUID,
    body: TaskPatch,
    request: Request,
    tasks: TaskRepoDep,
) -> Response:
    """Change only the fields sent."""
    write = await safe_write(request, task_id=str(task_id))
    changes = body.model_dump(exclude_unset=True)
    task = await tasks.update(
        task_id, precondition=write.precondition, idempotency=write.idempotency, **changes
    )
    if isinstance(task, StoredResponse):
        return _replay(task, request, tasks.owner_id)
    if changes:  # an empty PATCH changes (and logs) nothing
        logger.info("task_updated", user_id=str(tasks.owner_id), task_id=str(task_id))
    return _task_response(task)


@router.delete(
    "/{task_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**_written(204), **_PRECONDITIONS, **NOT_FOUND},
    openapi_extra=CHANGE_HEADERS,
)
async def delete_task(
    task_id: uuid.UUID,
    request: Request,
    tasks: TaskRepoDep,
) -> Response:
    write = await safe_write(request, task_id=str(task_id))
    stored = await tasks.delete(
        task_id, precondition=write.precondition, idempotency=write.idempotency
    )
    if stored is not None:
        return _replay(stored, request, tasks.owner_id)
    logger.info("task_deleted", user_id=str(tasks.owner_id), task_id=str(task_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
