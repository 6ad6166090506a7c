from __future__ import annotations

import uuid
from typing import Annotated

import structlog
from fastapi import APIRouter, Query, Request, Response, status
from pydantic import StringConstraints
from pydantic.json_schema import SkipJsonSchema

from app.http.conditional import none_match, version_etag
from app.http.errors import error_responses
from app.http.request_headers import IF_NONE_MATCH, documented
from app.http.resources import (
    ETAG_HEADER,
    NOT_MODIFIED,
    JSONBytesResponse,
    page_etag,
    written,
)
from app.idempotency.deps import CHANGE_HEADERS, KEY_HEADERS, safe_write
from app.idempotency.replay import StoredResponse
from app.tasks.deps import TaskRepoDep
from app.tasks.due import DueBound, TimeZoneName, time_zone
from app.tasks.errors import InvalidTimeZoneError
from app.tasks.listing import CURSOR_PATTERN as LISTING_CURSOR_PATTERN
from app.tasks.listing import (
    MAX_QUERY_LENGTH,
    QUERY_PATTERN,
    SORT_KEY,
    Listing,
    SortParameter,
)
from app.tasks.pagination import DEFAULT_PAGE_SIZE, PageLimit
from app.tasks.responses import (
    CHANGE,
    NOT_FOUND,
    PRECONDITIONS,
    TASKS_PREFIX,
    WRITE_NOT_FOUND,
    location,
    replay,
    task_response,
)
from app.tasks.schemas import (
    Priority,
    TaskCreate,
    TaskList,
    TaskMove,
    TaskPatch,
    TaskRead,
    TaskUpdate,
    task_json,
    tasks_json,
)

logger = structlog.get_logger("app.tasks")


router = APIRouter(
    prefix=TASKS_PREFIX,
    tags=["tasks"],
    responses=error_responses(401, 403, 422, 503),
)

CONDITIONAL_READ_HEADERS = documented(IF_NONE_MATCH)
# Routes are tried in the order they are declared: the ones an SPA calls most come first.


@router.get(
    "",
    response_model=TaskList,
    responses={
        200: {
            "description": "Newest first unless sort says otherwise. When more remain, a "
            '`Link: <url>; rel="next"` header carries the next page\'s URL.',
            "headers": {
                "Link": {"schema": {"type": "string"}, "description": "Next page"},
                "ETag": {"schema": {"type": "string"}, "description": "A weak tag of the page"},
            },
        },
        **NOT_MODIFIED,
        **error_responses(404, descriptions={404: "list_id names no live list of yours"}),
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
    list_id: Annotated[
        uuid.UUID | SkipJsonSchema[None], Query(description="Only the tasks of this list")
    ] = None,
    priority: Annotated[
        Priority | SkipJsonSchema[None], Query(description="Only this priority")
    ] = None,
    due_before: Annotated[
        DueBound | SkipJsonSchema[None],
        Query(
            description="Due before this instant (RFC 3339 with an offset; an all-day due "
            "counts as 00:00 UTC)"
        ),
    ] = None,
    due_after: Annotated[
        DueBound | SkipJsonSchema[None],
        Query(
            description="Due at or after this instant (RFC 3339 with an offset; an all-day due "
            "counts as 00:00 UTC)"
        ),
    ] = None,
    overdue: Annotated[
        bool | SkipJsonSchema[None],
        Query(description="Open tasks whose due has passed (an all-day due: its day, in tz)"),
    ] = None,
    tz: Annotated[
        TimeZoneName, Query(description="The zone whose today overdue compares days with")
    ] = "UTC",
    q: Annotated[
        Annotated[
            str,
            StringConstraints(min_length=1, max_length=MAX_QUERY_LENGTH, pattern=QUERY_PATTERN),
        ]
        | SkipJsonSchema[None],
        Query(
            description="Full-text search of title and description; the last word matches "
            'as a prefix ("gro" finds "groceries"); "quoted phrases", -excluded, or'
        ),
    ] = None,
    sort: Annotated[
        SortParameter | SkipJsonSchema[None],
        Query(
            description="position (needs list_id), due (no due last), priority, created, "
            "updated, relevance (needs q); a leading - for descending. Default: -relevance with "
            "q, else -created (newest first)"
        ),
    ] = None,
    limit: PageLimit = DEFAULT_PAGE_SIZE,
    cursor: Annotated[
        Annotated[str, StringConstraints(pattern=LISTING_CURSOR_PATTERN)] | SkipJsonSchema[None],
        Query(description="From the previous page's Link header"),
    ] = None,
) -> Response:
    try:
        time_zone(tz)
    except ValueError:
        raise InvalidTimeZoneError() from None
    listing = Listing.of(
        completed=completed,
        list_id=list_id,
        priority=priority,
        due_before=due_before,
        due_after=due_after,
        overdue=overdue,
        tz=tz,
        q=q,
        sort=sort,
        cursor=cursor,
    )
    rows = await tasks.list(listing, limit=limit + 1, list_id=list_id)
    headers: dict[str, str] = {}
    if len(rows) > limit:
        assert listing is not None
        rows = rows[:limit]
        next_url = request.url.include_query_params(cursor=listing.cursor_after(rows[-1]))
        headers["Link"] = f'<{next_url}>; rel="next"'
    content = tasks_json(rows, without=SORT_KEY)
    headers["ETag"] = page_etag(content, headers.get("Link"))
    if_none_match = IF_NONE_MATCH.read(request)
    if if_none_match is not None and none_match(if_none_match, headers["ETag"]):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return JSONBytesResponse(content, headers=headers)


@router.get(
    "/{task_id}",
    response_model=TaskRead,
    responses={200: {"headers": ETAG_HEADER}, **NOT_MODIFIED, **NOT_FOUND},
    openapi_extra=CONDITIONAL_READ_HEADERS,
)
async def get_task(task_id: uuid.UUID, request: Request, tasks: TaskRepoDep) -> Response:
    task = await tasks.get(task_id)
    etag = version_etag(task["version"])
    if_none_match = IF_NONE_MATCH.read(request)
    if if_none_match is not None and none_match(if_none_match, etag):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag})
    return JSONBytesResponse(task_json(task), headers={"ETag": etag})


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
        return replay(task, request, tasks.owner_id)
    logger.info(
        "task_toggled",
        user_id=str(tasks.owner_id),
        task_id=str(task_id),
        completed=task["completed"],
    )
    return task_response(task)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=TaskRead,
    responses={
        **written(201),
        201: {
            "headers": {
                **written(201)[201]["headers"],
                "Location": {"schema": {"type": "string"}},
            }
        },
        **error_responses(
            404,
            409,
            413,
            descriptions={
                404: "list_not_found: list_id is not one of your lists",
                409: "task_exists: the chosen id is taken; idempotency_key_in_use: a request "
                "with this Idempotency-Key is still running (retry after Retry-After seconds)",
            },
        ),
    },
    openapi_extra=KEY_HEADERS,
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
        list_id=body.list_id,
        priority=body.priority,
        due=body.due,
        idempotency=write.idempotency,
    )
    if isinstance(task, StoredResponse):
        return replay(task, request, tasks.owner_id)
    task_id = str(task["id"])
    logger.info("task_created", user_id=str(tasks.owner_id), task_id=task_id)
    return task_response(
        task,
        status.HTTP_201_CREATED,
        headers={"Location": location(request, tasks.owner_id, task_id)},
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
        return replay(task, request, tasks.owner_id)
    logger.info("task_updated", user_id=str(tasks.owner_id), task_id=str(task_id))
    return task_response(task)


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
    # The fields sent, as validated (a due stays a DueIn, which knows its columns).
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    task = await tasks.update(
        task_id, precondition=write.precondition, idempotency=write.idempotency, **changes
    )
    if isinstance(task, StoredResponse):
        return replay(task, request, tasks.owner_id)
    if changes:  # an empty PATCH changes (and logs) nothing
        logger.info("task_updated", user_id=str(tasks.owner_id), task_id=str(task_id))
    return task_response(task)


@router.delete(
    "/{task_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**written(204), **PRECONDITIONS, **NOT_FOUND},
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
        return replay(stored, request, tasks.owner_id)
    logger.info("task_deleted", user_id=str(tasks.owner_id), task_id=str(task_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{task_id}/move",
    response_model=TaskRead,
    responses={
        **CHANGE,
        **error_responses(
            404,
            409,
            413,
            descriptions={
                404: "task_not_found, or list_not_found: list_id is not one of your lists",
                409: "anchor_not_found: before_id or after_id is not a live task of the target "
                "list; idempotency_key_in_use: a request with this key is still running",
            },
        ),
    },
    openapi_extra=CHANGE_HEADERS,
)
async def move_task(
    task_id: uuid.UUID,
    body: TaskMove,
    request: Request,
    tasks: TaskRepoDep,
) -> Response:
    """Put the task into ``list_id`` (default: its own list; the id stays the same), directly
    before ``before_id`` or after ``after_id``, or (neither) last. Answers the task with its
    new ``position``."""
    write = await safe_write(request, task_id=str(task_id))
    task = await tasks.move(
        task_id,
        list_id=body.list_id,
        before_id=body.before_id,
        after_id=body.after_id,
        precondition=write.precondition,
        idempotency=write.idempotency,
    )
    if isinstance(task, StoredResponse):
        return replay(task, request, tasks.owner_id)
    logger.info(
        "task_moved",
        user_id=str(tasks.owner_id),
        task_id=str(task_id),
        list_id=str(task["list_id"]),
    )
    return task_response(task)
