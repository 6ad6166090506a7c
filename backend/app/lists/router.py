"""The list routes: /api/{user_id}/lists."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

import structlog
from fastapi import APIRouter, Request, Response, status

from app.changes.repository import Written
from app.http.conditional import none_match
from app.http.errors import error_responses
from app.http.request_headers import IF_NONE_MATCH, documented
from app.http.resources import (
    ETAG_HEADER,
    NOT_MODIFIED,
    JSONBytesResponse,
    item_location,
    page_etag,
    preconditions,
    replayed,
    versioned_response,
    written,
)
from app.idempotency.deps import CHANGE_HEADERS, KEY_HEADERS, safe_write
from app.idempotency.replay import StoredResponse
from app.lists.deps import ListRepoDep
from app.lists.schemas import (
    ListCollection,
    ListCreate,
    ListMove,
    ListPatch,
    ListRead,
    ListVersionConflict,
    list_json,
    lists_json,
    stored_list,
)

logger = structlog.get_logger("app.lists")

LISTS_PREFIX = "/api/{user_id}/lists"
router = APIRouter(
    prefix=LISTS_PREFIX, tags=["lists"], responses=error_responses(401, 403, 422, 503)
)
LIST_NOT_FOUND = error_responses(404)
PRECONDITIONS = preconditions(ListVersionConflict)
CHANGE = {**written(200), **PRECONDITIONS}


def _list_response(
    row: Written, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return versioned_response(list_json(row), row["version"], status_code, headers)


def _replay(stored: StoredResponse, request: Request, owner_id: uuid.UUID) -> Response:
    return replayed(
        stored,
        request,
        owner_id,
        collection=LISTS_PREFIX.format(user_id=owner_id),
        read=stored_list,
        render=list_json,
    )


@router.get(
    "",
    response_model=ListCollection,
    responses={
        200: {"headers": {"ETag": {"schema": {"type": "string"}}}},
        **NOT_MODIFIED,
    },
    openapi_extra=documented(IF_NONE_MATCH),
)
async def list_lists(request: Request, lists: ListRepoDep) -> Response:
    """Every list, in position order, with its counts of open and completed tasks."""
    content = lists_json(await lists.all())
    etag = page_etag(content, None)
    if_none_match = IF_NONE_MATCH.read(request)
    if if_none_match is not None and none_match(if_none_match, etag):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag})
    return JSONBytesResponse(content, headers={"ETag": etag})


@router.get(
    "/{list_id}",
    response_model=ListRead,
    responses={200: {"headers": ETAG_HEADER}, **LIST_NOT_FOUND},
)
async def get_list(list_id: uuid.UUID, lists: ListRepoDep) -> Response:
    """The list with its counts. Never 304: its ETag is its version (for If-Match), and the
    counts change with its tasks while the version stays."""
    return _list_response(await lists.get(list_id))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ListRead,
    responses={
        201: {
            "headers": {
                **written(201)[201]["headers"],
                "Location": {"schema": {"type": "string"}},
            }
        },
        **error_responses(
            409,
            413,
            descriptions={
                409: "list_exists: the chosen id is taken; idempotency_key_in_use: a request "
                "with this Idempotency-Key is still running (retry after Retry-After seconds)"
            },
        ),
    },
    openapi_extra=KEY_HEADERS,
)
async def create_list(body: ListCreate, request: Request, lists: ListRepoDep) -> Response:
    """A new list, placed last."""
    write = await safe_write(request, changes_existing=False)
    row = await lists.create(name=body.name, list_id=body.id, idempotency=write.idempotency)
    if isinstance(row, StoredResponse):
        return _replay(row, request, lists.owner_id)
    logger.info("list_created", user_id=str(lists.owner_id), list_id=str(row["id"]))
    return _list_response(
        row,
        status.HTTP_201_CREATED,
        headers={
            "Location": item_location(
                request, LISTS_PREFIX.format(user_id=lists.owner_id), row["id"]
            )
        },
    )


@router.patch(
    "/{list_id}",
    response_model=ListRead,
    responses={**CHANGE, **error_responses(404, 413)},
    openapi_extra=CHANGE_HEADERS,
)
async def patch_list(
    list_id: uuid.UUID, body: ListPatch, request: Request, lists: ListRepoDep
) -> Response:
    """Rename the list (an empty body changes nothing)."""
    write = await safe_write(request, list_id=str(list_id))
    row = await lists.rename(
        list_id,
        name=body.name,
        precondition=write.precondition,
        idempotency=write.idempotency,
    )
    if isinstance(row, StoredResponse):
        return _replay(row, request, lists.owner_id)
    if body.name is not None:
        logger.info("list_renamed", user_id=str(lists.owner_id), list_id=str(list_id))
    return _list_response(row)


@router.delete(
    "/{list_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        **written(204),
        **PRECONDITIONS,
        **error_responses(
            404,
            409,
            descriptions={
                409: "default_list_protected: the default list cannot be deleted; "
                "idempotency_key_in_use: a request with this key is still running"
            },
        ),
    },
    openapi_extra=CHANGE_HEADERS,
)
async def delete_list(list_id: uuid.UUID, request: Request, lists: ListRepoDep) -> Response:
    """Delete the list; its tasks go to the trash (restored, they go to the default list)."""
    write = await safe_write(request, list_id=str(list_id))
    stored = await lists.delete(
        list_id, precondition=write.precondition, idempotency=write.idempotency
    )
    if stored is not None:
        return _replay(stored, request, lists.owner_id)
    logger.info("list_deleted", user_id=str(lists.owner_id), list_id=str(list_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{list_id}/move",
    response_model=ListRead,
    responses={
        **CHANGE,
        **error_responses(
            404,
            409,
            413,
            descriptions={
                409: "anchor_not_found: before_id or after_id is not a live list; "
                "idempotency_key_in_use: a request with this key is still running"
            },
        ),
    },
    openapi_extra=CHANGE_HEADERS,
)
async def move_list(
    list_id: uuid.UUID, body: ListMove, request: Request, lists: ListRepoDep
) -> Response:
    """Put the list directly before ``before_id``, after ``after_id``, or (neither) last."""
    write = await safe_write(request, list_id=str(list_id))
    row = await lists.move(
        list_id,
        before_id=body.before_id,
        after_id=body.after_id,
        precondition=write.precondition,
        idempotency=write.idempotency,
    )
    if isinstance(row, StoredResponse):
        return _replay(row, request, lists.owner_id)
    logger.info("list_moved", user_id=str(lists.owner_id), list_id=str(list_id))
    return _list_response(row)
