"""EventStreamResponse: one stream's changes as Server-Sent Events.

Each change is one event, named ``task.upsert`` or ``task.delete``, whose data is the change as
/changes writes it and whose ``id`` is its change number: the cursor after it, which a client
sends back as ``Last-Event-ID`` to resume exactly there. A quiet stream sends a comment every
heartbeat period, which keeps proxies from closing it.

The response is a plain ASGI callable rather than a StreamingResponse so that it owns its
ending: it leaves its channel however it ends, and it ends cleanly (the last chunk sent) when
the client goes, when the token would no longer be accepted (expired, or its session ended:
the client reconnects with a fresh one), when the client reads too slowly, when the feed cannot
be read, and when the server shuts down.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import structlog
from fastapi import Response
from starlette.types import Receive, Scope, Send

from app.changes.feed import Change, ChangeFeed, FeedPage, ListChange
from app.changes.schemas import change_json
from app.http.errors import AppError
from app.live.hub import READ_PAGE, Stream

logger = structlog.get_logger("app.live")

MEDIA_TYPE = "text/event-stream"
# Sent first, so a client sees the stream is open before any change.
OPENED = b": stream open\n\n"
# A comment line alone, with no blank line after it: the spec dispatches nothing either way, but
# some clients (httpx-sse) turn a blank line after an earlier event's id into an empty event.
HEARTBEAT = b": heartbeat\n"
# A client that stops reading blocks a write once the socket's buffers are full: after this long
# the response gives up, and the server closes the connection.
SEND_TIMEOUT_SECONDS = 30.0
# By (a list's change, a deletion).
EVENT_NAMES = {
    (False, True): b"task.delete",
    (False, False): b"task.upsert",
    (True, True): b"list.delete",
    (True, False): b"list.upsert",
}


def event_bytes(row: Change, floor: int = 0) -> bytes:
    """One change as an event (the data is one line: JSON escapes every line break). Its id is
    the feed cursor after it: with the floor of a full sync still being paged, as /changes
    writes it (changes/feed.py FeedCursor)."""
    seq = row["change_seq"]
    event_id = str(seq) if floor <= seq else f"{seq}.{floor}"
    return (
        b"event: "
        + EVENT_NAMES[isinstance(row, ListChange), row["deleted_at"] is not None]
        + b"\nid: "
        + event_id.encode()
        + b"\ndata: "
        + change_json(row)
        + b"\n\n"
    )


class EventStreamResponse(Response):
    media_type = MEDIA_TYPE

    def __init__(
        self,
        stream: Stream,
        feed: ChangeFeed,
        first_page: FeedPage,
        *,
        floor: int,
        still_accepted: Callable[[], bool],
        deaf: Callable[[], bool],
        heartbeat_seconds: float,
    ) -> None:
        # No Response.__init__: it would set a Content-Length for an empty body.
        self.status_code = 200
        self.background = None
        self.init_headers(
            {
                "Content-Type": MEDIA_TYPE,  # without the charset init_headers would add
                "Cache-Control": "no-store",
                # nginx would otherwise buffer the stream and deliver changes late.
                "X-Accel-Buffering": "no",
            }
        )
        self._stream = stream
        self._feed = feed
        self._first_page: FeedPage | None = first_page
        self._floor = floor
        self._still_accepted = still_accepted
        self._deaf = deaf
        self._heartbeat_seconds = heartbeat_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watcher: asyncio.Task[None] | None = None
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            watcher = asyncio.create_task(self._end_on_disconnect(receive))
            async for chunk in self._chunks():
                async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except TimeoutError:
            self._stream.end("client_not_reading")
        finally:
            if watcher is not None:
                watcher.cancel()
            self._stream.close()
            logger.info(
                "event_stream_closed",
                user_id=str(self._stream.user_id),
                reason=self._stream.end_reason,
            )

    async def _end_on_disconnect(self, receive: Receive) -> None:
        try:
            while (await receive())["type"] != "http.disconnect":
                pass
        finally:
            # Whichever way receive() ended (a body over the limit raises): nobody would notice
            # the client going otherwise.
            self._stream.end("client_closed")

    async def _chunks(self) -> AsyncIterator[bytes]:
        yield OPENED
        async for chunk in self._catch_up():
            yield chunk
        if self._stream.end_reason is not None:
            return
        while True:
            try:
                async with asyncio.timeout(self._heartbeat_seconds):
                    changes = await self._stream.next_changes()
            except TimeoutError:
                changes = []  # a quiet period: time for a heartbeat
            if changes is None or not self._may_go_on():
                return
            yield b"".join(event_bytes(row) for row in changes) if changes else HEARTBEAT

    async def _catch_up(self) -> AsyncIterator[bytes]:
        """The changes after the client's cursor, a page at a time; then the channel feeds the
        stream. The pages are not kept once sent: a stream lives for hours."""
        page, self._first_page = self._first_page, None
        assert page is not None  # one catch-up per response
        while True:
            if page.rows:
                yield b"".join(event_bytes(row, self._floor) for row in page.rows)
            if not page.has_more:
                break
            if not self._may_go_on():
                return
            try:
                page = await self._feed.read(since=page.cursor, limit=READ_PAGE)
            except Exception as exc:
                # The database is down (a bug: with its traceback): the client resumes later.
                logger.warning(
                    "event_stream_catch_up_failed",
                    error=exc.code if isinstance(exc, AppError) else type(exc).__name__,
                    exc_info=not isinstance(exc, AppError),
                )
                self._stream.end("read_failed")
                return
            if self._stream.end_reason is not None:
                return
        self._stream.caught_up(page.cursor.after)

    def _may_go_on(self) -> bool:
        """Before each write: the token must still be accepted (not expired, its session not
        ended), and the process still listening, or the client is better off elsewhere."""
        if not self._still_accepted():
            self._stream.end("token_no_longer_accepted")
        elif self._deaf():
            self._stream.end("not_listening")
        return self._stream.end_reason is None
