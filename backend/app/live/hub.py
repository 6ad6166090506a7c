"""EventHub: this process's open event streams, woken by the database's notifications.

Every write announces its owner's id on `task_changes` once it has committed (TaskRepository,
through db/notifications.py NotificationSender, batched per process). The process's one
listener hands the ids to `EventHub`, which wakes each owner's `UserChannel` if any of the
owner's streams is open here. The channel reads the
owner's feed (changes/feed.py) once for all of them, from the lowest number any of them has
received, and hands each stream the changes above its own number.

Why a stream misses nothing: it joins its channel before its own catch-up read, and when that
read is done it wakes the channel once more. A change that commits after the catch-up's snapshot
notifies after its commit; whether the notification arrives before or after the catch-up ends,
a channel read begins after both, includes this stream and starts no higher than its number.
Why nothing twice: a stream takes only changes above what it has received, in number order.
Notifications sent while the listener was away are made up for by waking every channel when it
reconnects.
"""

from __future__ import annotations

import asyncio
import contextvars
import uuid
from collections.abc import Callable, Coroutine

import structlog

from app.changes.feed import Change, ChangeFeed, FeedCursor, ListChange
from app.db.database import Database
from app.db.engine import DriverConnection
from app.db.notifications import EVERY_KEY
from app.http.errors import AppError
from app.live.errors import NotListeningError, StreamsClosingError, TooManyStreamsError

logger = structlog.get_logger("app.live")

# Changes one channel read fetches at most; a longer backlog takes several reads in a row.
READ_PAGE = 500
# Changes waiting for one stream whose client reads too slowly: past this the stream ends, and
# the client resumes exactly where it stopped with Last-Event-ID.
MAX_PENDING = 5000
# A refused stream's Retry-After: streams are long-lived, so a slot frees up rarely.
RETRY_AFTER_SECONDS = 10


class Stream:
    """One open event stream: the changes handed to it that its response has yet to send."""

    def __init__(self, channel: UserChannel, *, include_lists: bool = False) -> None:
        self._channel = channel
        # Whether its client asked for the lists' changes too (the channel reads them for all).
        self.include_lists = include_lists
        # The highest change number handed over; None until its own catch-up read is done.
        self.received: int | None = None
        self._pending: list[Change] = []
        self._wakeup = asyncio.Event()
        self.end_reason: str | None = None

    @property
    def user_id(self) -> uuid.UUID:
        return self._channel.user_id

    def caught_up(self, through: int) -> None:
        """Its catch-up read has sent everything up to ``through``: the channel takes over."""
        self.received = through
        self._channel.wake()

    def hand(self, rows: list[Change], through: int) -> None:
        """A channel read's changes (in number order, every change up to ``through``)."""
        received = self.received
        if received is None or self.end_reason is not None:
            return
        self._pending.extend(
            row
            for row in rows
            if row["change_seq"] > received
            and (self.include_lists or not isinstance(row, ListChange))
        )
        self.received = max(received, through)
        if len(self._pending) > MAX_PENDING:
            self.end("client_too_slow")
        elif self._pending:
            self._wakeup.set()

    def end(self, reason: str) -> None:
        if self.end_reason is None:
            self.end_reason = reason
            self._wakeup.set()

    async def next_changes(self) -> list[Change] | None:
        """The changes waiting, once there are some; None once the stream has ended (what was
        still waiting is dropped: the client resumes with Last-Event-ID)."""
        if not self._pending and self.end_reason is None:
            await self._wakeup.wait()
        self._wakeup.clear()
        if self.end_reason is not None:
            return None
        changes, self._pending = self._pending, []
        return changes

    def close(self) -> None:
        """Leave the channel: the response has ended, whichever way."""
        self.end("closed")
        self._channel.leave(self)


class UserChannel:
    """One user's streams on this process, and the one read at a time that feeds them."""

    def __init__(self, hub: EventHub, user_id: uuid.UUID) -> None:
        self._hub = hub
        self.user_id = user_id
        self.streams: set[Stream] = set()
        self._reader: asyncio.Task[None] | None = None
        self._again = False

    def wake(self) -> None:
        if self._reader is not None:
            self._again = True  # the read under way may have begun before this change
        else:
            self._reader = self._hub.start_reader(self._read_while_woken())

    def leave(self, stream: Stream) -> None:
        self.streams.discard(stream)
        if not self.streams:
            self._hub.forget(self)

    async def _read_while_woken(self) -> None:
        try:
            while True:
                self._again = False
                ready = [s for s in self.streams if s.received is not None and not s.end_reason]
                if not ready:
                    return
                since = min(s.received for s in ready if s.received is not None)
                include_lists = any(stream.include_lists for stream in ready)
                feed = ChangeFeed(self._hub.database, self.user_id, include_lists=include_lists)
                page = await feed.read(since=FeedCursor(since), limit=READ_PAGE)
                for stream in ready:
                    stream.hand(page.rows, page.cursor.after)
                if not (page.has_more or self._again):
                    return
        except Exception as exc:
            # The database is down or the account is gone: the streams end, and each client
            # resumes exactly with Last-Event-ID once it can.
            error = exc.code if isinstance(exc, AppError) else type(exc).__name__
            logger.warning(
                "event_channel_read_failed",
                user_id=str(self.user_id),
                error=error,
                exc_info=not isinstance(exc, AppError),
            )
            for stream in list(self.streams):
                stream.end("read_failed")
        finally:
            self._reader = None


class EventHub:
    def __init__(
        self,
        database: Database,
        *,
        max_streams_per_user: int,
        heartbeat_seconds: float,
        deaf: Callable[[], bool] = lambda: False,
    ) -> None:
        self.database = database
        self.heartbeat_seconds = heartbeat_seconds
        # Whether the process's listener has been lost for too long (NotificationListener.
        # lost_too_long): its streams would stay silent, so they end and none opens.
        self.deaf = deaf
        # Every channel's read under way, including a forgotten channel's, for stop().
        self._readers: set[asyncio.Task[None]] = set()
        self._max_streams_per_user = max_streams_per_user
        # By the user id as text: a notification's payload is the key, with no parsing.
        self._channels: dict[str, UserChannel] = {}
        self._closing = False

    def __len__(self) -> int:
        """The streams open here."""
        return sum(len(channel.streams) for channel in self._channels.values())

    def join(self, user_id: uuid.UUID, *, include_lists: bool = False) -> Stream:
        """A new stream of ``user_id``'s changes, catching up before it is fed (Stream.caught_up).
        429 past the per-user cap; 503 once the server is shutting down."""
        if self._closing:
            raise StreamsClosingError()
        if self.deaf():
            raise NotListeningError()
        key = str(user_id)
        channel = self._channels.get(key)
        if channel is None:
            channel = self._channels[key] = UserChannel(self, user_id)
        elif len(channel.streams) >= self._max_streams_per_user:
            logger.info("event_stream_refused", user_id=key, open=len(channel.streams))
            raise TooManyStreamsError(RETRY_AFTER_SECONDS)
        stream = Stream(channel, include_lists=include_lists)
        channel.streams.add(stream)
        return stream

    def start_reader(self, read: Coroutine[None, None, None]) -> asyncio.Task[None]:
        # A fresh context: the read serves every stream of the user, not the request or the
        # notification whose log context happened to wake it.
        reader = asyncio.create_task(read, name="event-channel", context=contextvars.Context())
        self._readers.add(reader)
        reader.add_done_callback(self._readers.discard)
        return reader

    def forget(self, channel: UserChannel) -> None:
        key = str(channel.user_id)
        if self._channels.get(key) is channel:
            del self._channels[key]

    def on_notification(self, payload: str) -> None:
        """The listener's callback for `task_changes`: owners' ids, comma-separated, or "*"."""
        keys = payload.split(",")
        if EVERY_KEY in keys:
            self._wake_every_channel()
            return
        for key in keys:
            channel = self._channels.get(key)
            if channel is not None:
                channel.wake()

    async def on_listening(self, _connection: DriverConnection) -> None:
        """After the listener (re)connects: whatever was notified while it was away."""
        self._wake_every_channel()

    def _wake_every_channel(self) -> None:
        for channel in list(self._channels.values()):
            channel.wake()

    def close_streams(self) -> None:
        """The server is shutting down: every stream ends now (its response completes), and
        no new one opens. Called once per connection by the server's shutdown: once is enough."""
        if self._closing:
            return
        self._closing = True
        for channel in list(self._channels.values()):
            for stream in list(channel.streams):
                stream.end("shutdown")

    async def stop(self) -> None:
        self.close_streams()
        readers = list(self._readers)
        for reader in readers:
            reader.cancel()
        if readers:
            await asyncio.wait(readers)
