"""GET /api/{user_id}/changes: what changed in the owner's tasks since a cursor."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import StringConstraints
from pydantic.json_schema import SkipJsonSchema

from app.auth.deps import TokenSubject, require_path_owner
from app.changes.feed import ChangeFeed, FeedCursor
from app.changes.schemas import CURSOR_PATTERN, ChangesPage, changes_json
from app.db.deps import get_database
from app.http.errors import error_responses

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

router = APIRouter(
    prefix="/api/{user_id}/changes",
    tags=["sync"],
    responses=error_responses(401, 403, 422, 503),
)


# What a client may ask the feed (and the event stream) for besides tasks.
Include = Annotated[
    Literal["lists"] | SkipJsonSchema[None],
    Query(description="lists: the lists' changes too (list_upsert, list_delete)"),
]


async def get_change_feed(
    request: Request,
    user_id: Annotated[uuid.UUID, Path(description="Must be the authenticated user's id")],
    subject: TokenSubject,
    include: Include = None,
) -> ChangeFeed:
    """The feed of the path's owner, who must be the caller."""
    database = await get_database(request)
    await require_path_owner(database, user_id, subject)
    return ChangeFeed(database, user_id, include_lists=include == "lists")


class ChangesJSONResponse(Response):
    media_type = "application/json"


@router.get("", response_model=ChangesPage, responses=error_responses(410))
async def list_changes(
    feed: Annotated[ChangeFeed, Depends(get_change_feed)],
    since: Annotated[
        Annotated[str, StringConstraints(pattern=CURSOR_PATTERN)] | SkipJsonSchema[None],
        Query(description="The cursor of the previous answer; absent: a full snapshot"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> Response:
    """Without ``since``: every live task as an upsert, and a cursor. With it: each task that
    changed since, once, in its latest state (``upsert``), or ``delete`` for one trashed or
    deleted for good. Follow ``cursor`` while ``has_more``. 410 ``cursor_expired``: sync in
    full."""
    page = await feed.read(
        since=FeedCursor.decode(since) if since is not None else None, limit=limit
    )
    return ChangesJSONResponse(changes_json(page.rows, page.cursor.encode(), page.has_more))
