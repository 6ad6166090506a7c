"""GET /api/{user_id}/events: the owner's changes as they commit, as Server-Sent Events."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Path, Request
from pydantic import StringConstraints
from pydantic.json_schema import SkipJsonSchema

from app.auth.deps import VerifiedBearerDep, require_path_owner
from app.changes.feed import ChangeFeed, FeedCursor, FeedPage
from app.changes.router import Include
from app.changes.schemas import CURSOR_PATTERN
from app.db.deps import get_database
from app.http.errors import error_responses
from app.live.hub import READ_PAGE, EventHub
from app.live.response import MEDIA_TYPE, EventStreamResponse

router = APIRouter(
    prefix="/api/{user_id}/events",
    tags=["sync"],
    responses=error_responses(401, 403, 422, 503),
)

STREAM_DESCRIPTION = (
    "`text/event-stream`. Each change is an event `task.upsert` or `task.delete` (with "
    "include=lists also `list.upsert` and `list.delete`) whose `data` is "
    "the change as /changes writes it and whose `id` is the cursor after it. Comments (lines "
    "starting with `:`) open the stream and keep it alive; ignore them. The stream ends when "
    "the access token expires or its session ends, when the client falls too far behind, and "
    "when the server shuts down: reconnect with `Last-Event-ID`."
)


async def get_event_hub(request: Request) -> EventHub:
    """The lifespan's hub (main.py)."""
    hub: EventHub = request.state.events
    return hub


@router.get(
    "",
    status_code=200,
    response_class=EventStreamResponse,
    responses={
        200: {"description": STREAM_DESCRIPTION, "content": {MEDIA_TYPE: {}}},
        **error_responses(
            410,
            429,
            descriptions={429: "This user has EVENTS_MAX_STREAMS_PER_USER streams open here"},
        ),
    },
)
async def stream_events(
    request: Request,
    user_id: Annotated[uuid.UUID, Path(description="Must be the authenticated user's id")],
    bearer: VerifiedBearerDep,
    last_event_id: Annotated[
        Annotated[str, StringConstraints(pattern=CURSOR_PATTERN)] | SkipJsonSchema[None],
        Header(
            alias="Last-Event-ID",
            description="The id of the last event received, or a /changes cursor: the stream "
            "first sends every change after it. Absent: only changes from now on.",
        ),
    ] = None,
    include: Include = None,
) -> EventStreamResponse:
    """The owner's task changes as they happen, from any replica, within about a second.
    Errors (410 ``cursor_expired`` for a cursor the feed no longer covers, 429
    ``too_many_streams``) come before the stream starts."""
    database = await get_database(request)
    await require_path_owner(database, user_id, bearer.claims.subject)
    hub = await get_event_hub(request)
    include_lists = include == "lists"
    stream = hub.join(user_id, include_lists=include_lists)
    feed = ChangeFeed(database, user_id, include_lists=include_lists)
    since = FeedCursor.decode(last_event_id) if last_event_id is not None else None
    try:
        # The first read before the answer starts, so its errors are statuses, not a cut stream.
        if since is None:
            first_page = FeedPage(rows=[], cursor=await feed.newest(), has_more=False)
        else:
            first_page = await feed.read(since=since, limit=READ_PAGE)
    except BaseException:
        stream.close()
        raise
    return EventStreamResponse(
        stream,
        feed,
        first_page,
        floor=since.floor if since is not None else 0,
        still_accepted=bearer.still_accepted,
        deaf=hub.deaf,
        heartbeat_seconds=hub.heartbeat_seconds,
    )
