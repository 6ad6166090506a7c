"""EventHub's interleavings, driven step by step on a real database: the cases an end-to-end
stream cannot pin down (live/hub.py's docstring argues why a stream misses nothing and gets
nothing twice; each test here is one step of that argument)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from app.db.database import Database
from app.db.notifications import EVERY_KEY
from app.live import hub as hub_module
from app.live.errors import StreamsClosingError, TooManyStreamsError
from app.live.hub import EventHub, Stream
from app.tasks.repository import TaskRepository
from tests.fixtures.accounts import StoredUser

pytestmark = pytest.mark.usefixtures("clean_database")


@pytest.fixture
async def hub(database: Database) -> AsyncIterator[EventHub]:
    hub = EventHub(database, max_streams_per_user=3, heartbeat_seconds=1)
    yield hub
    await hub.stop()


async def changes_of(stream: Stream, count: int) -> list[int]:
    """The change numbers of the next ``count`` changes handed to ``stream``."""
    numbers: list[int] = []
    async with asyncio.timeout(5):
        while len(numbers) < count:
            changes = await stream.next_changes()
            assert changes is not None, stream.end_reason
            numbers += [row["change_seq"] for row in changes]
    return numbers


async def create(database: Database, user: StoredUser, count: int) -> list[int]:
    """``count`` tasks of ``user``, written as a route would; their change numbers."""
    tasks = TaskRepository(database, user.id)
    ids = [(await tasks.create(title=f"t{n}"))["id"] for n in range(count)]
    async with database.engine.connect() as connection:
        numbers = await connection.scalars(
            text("SELECT change_seq FROM tasks WHERE id = ANY(:ids) ORDER BY change_seq"),
            {"ids": ids},
        )
        return list(numbers)


async def test_streams_at_different_numbers_each_get_what_is_above_their_own_in_pages(
    hub: EventHub,
    database: Database,
    stored_user: StoredUser,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hub_module, "READ_PAGE", 2)  # five changes: three reads
    numbers = await create(database, stored_user, 5)
    behind, ahead = hub.join(stored_user.id), hub.join(stored_user.id)
    behind.caught_up(0)
    ahead.caught_up(numbers[2])
    assert await changes_of(behind, 5) == numbers
    assert await changes_of(ahead, 2) == numbers[3:]


async def test_a_change_announced_during_a_read_is_read_again(
    hub: EventHub, database: Database, stored_user: StoredUser
) -> None:
    stream = hub.join(stored_user.id)
    stream.caught_up(0)  # the channel's first read starts now
    first = await create(database, stored_user, 1)  # commits while that read may be under way
    hub.on_notification(str(stored_user.id))
    assert await changes_of(stream, 1) == first
    second = await create(database, stored_user, 1)
    hub.on_notification(f"{stored_user.id},{stored_user.id}")  # a batch naming it twice
    assert await changes_of(stream, 1) == second


async def test_a_stream_still_catching_up_is_not_fed_and_misses_nothing_after(
    hub: EventHub, database: Database, stored_user: StoredUser
) -> None:
    caught_up, catching_up = hub.join(stored_user.id), hub.join(stored_user.id)
    caught_up.caught_up(0)
    numbers = await create(database, stored_user, 2)
    hub.on_notification(str(stored_user.id))
    assert await changes_of(caught_up, 2) == numbers
    # Its own catch-up read saw the first change only; the channel gives it the rest.
    catching_up.caught_up(numbers[0])
    assert await changes_of(catching_up, 1) == numbers[1:]


async def test_every_channel_wakes_on_star_and_after_the_listener_reconnects(
    hub: EventHub, database: Database, stored_user: StoredUser
) -> None:
    stream = hub.join(stored_user.id)
    stream.caught_up(0)
    await asyncio.sleep(0.1)  # the wake of caught_up has read nothing
    first = await create(database, stored_user, 1)
    hub.on_notification(f"{uuid.uuid4()},{EVERY_KEY}")  # "*" among other keys
    assert await changes_of(stream, 1) == first
    second = await create(database, stored_user, 1)
    await hub.on_listening(None)  # type: ignore[arg-type]  (the connection is not used)
    assert await changes_of(stream, 1) == second


async def test_a_forgotten_channel_and_its_successor_both_end_well(
    hub: EventHub, database: Database, stored_user: StoredUser
) -> None:
    old = hub.join(stored_user.id)
    old.caught_up(0)  # its channel's read is under way
    old.close()  # the channel is forgotten while it reads
    assert len(hub) == 0
    new = hub.join(stored_user.id)
    numbers = await create(database, stored_user, 1)
    new.caught_up(0)
    assert await changes_of(new, 1) == numbers
    assert await old.next_changes() is None  # ended, fed nothing


async def test_the_cap_counts_open_streams_and_shutdown_ends_them_and_refuses_more(
    hub: EventHub, stored_user: StoredUser
) -> None:
    streams = [hub.join(stored_user.id) for _ in range(3)]
    with pytest.raises(TooManyStreamsError):
        hub.join(stored_user.id)
    streams[0].close()
    streams[0] = hub.join(stored_user.id)
    hub.close_streams()
    for stream in streams:
        assert await stream.next_changes() is None
        assert stream.end_reason == "shutdown"
    with pytest.raises(StreamsClosingError):
        hub.join(stored_user.id)


async def test_a_stream_too_far_behind_ends_and_is_fed_nothing_more(
    hub: EventHub,
    database: Database,
    stored_user: StoredUser,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its client reads too slowly: rather than hold its changes without bound, the stream
    ends (the client resumes with Last-Event-ID), and the user's other streams go on."""
    monkeypatch.setattr(hub_module, "MAX_PENDING", 2)
    slow, reading = hub.join(stored_user.id), hub.join(stored_user.id)
    slow.caught_up(0)
    reading.caught_up(0)
    for _ in range(3):
        numbers = await create(database, stored_user, 1)
        hub.on_notification(str(stored_user.id))
        assert await changes_of(reading, 1) == numbers  # read as they come
    assert await slow.next_changes() is None  # three waiting: one past the limit
    assert slow.end_reason == "client_too_slow"
