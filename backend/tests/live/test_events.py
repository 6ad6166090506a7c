"""Live updates (issue 16): GET /api/{user_id}/events, read by a real SSE client from real
server processes sharing one database.

Two processes, as two replicas would: a write through either must reach a stream open on the
other within a second, through PostgreSQL's notifications alone.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import EventSource, ServerSentEvent, aconnect_sse

from tests.changes.test_convergence import OPS, act, server_tasks
from tests.fixtures.accounts import Account, sign_up_via
from tests.fixtures.processes import AppServer, two_servers_serving
from tests.fixtures.tcp_proxy import running_proxy

pytestmark = [pytest.mark.usefixtures("clean_database"), pytest.mark.slow]

MAX_STREAMS = 3
HEARTBEAT_SECONDS = 1
SERVER_ENV = {
    "EVENTS_MAX_STREAMS_PER_USER": str(MAX_STREAMS),
    "EVENTS_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
}
# What the contract promises for a change committed through another replica.
DELIVERY_SECONDS = 1.0


@pytest.fixture(scope="module")
def servers(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[AppServer, AppServer]]:
    root = tmp_path_factory.mktemp("event-servers")
    with two_servers_serving(database_url, root, SERVER_ENV) as servers:
        yield servers


@pytest.fixture
async def clients(
    servers: tuple[AppServer, AppServer],
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    async with (
        httpx.AsyncClient(base_url=servers[0].base_url, timeout=10) as a,
        httpx.AsyncClient(base_url=servers[1].base_url, timeout=10) as b,
    ):
        yield a, b


@asynccontextmanager
async def events(
    http: httpx.AsyncClient,
    account: Account,
    last_event_id: str | None = None,
    include: str | None = None,
) -> AsyncIterator[EventReader]:
    headers = account.headers | ({"Last-Event-ID": last_event_id} if last_event_id else {})
    url = f"/api/{account.id}/events" + (f"?include={include}" if include else "")
    async with aconnect_sse(http, "GET", url, headers=headers) as source:
        assert source.response.status_code == 200, await source.response.aread()
        reader = EventReader(source)
        try:
            yield reader
        finally:
            reader.stop()


class EventReader:
    """The events of one open stream, read in the background into a queue, so a wait with a
    deadline does not cancel the SSE parser in the middle of a read."""

    END = ServerSentEvent(event="end of stream")

    def __init__(self, source: EventSource) -> None:
        self.response = source.response
        self._queue: asyncio.Queue[ServerSentEvent] = asyncio.Queue()
        self._task = asyncio.create_task(self._read(source))

    async def _read(self, source: EventSource) -> None:
        try:
            async for event in source.aiter_sse():
                self._queue.put_nowait(event)
        finally:
            self._queue.put_nowait(self.END)

    def stop(self) -> None:
        self._task.cancel()

    async def next(self, seconds: float = 5.0) -> ServerSentEvent:
        """The next event; StopAsyncIteration once the server ended the stream."""
        async with asyncio.timeout(seconds):
            event = await self._queue.get()
        if event is self.END:
            self._queue.put_nowait(event)
            raise StopAsyncIteration
        return event

    async def take(self, count: int, seconds: float = 5.0) -> list[ServerSentEvent]:
        return [await self.next(seconds) for _ in range(count)]

    async def nothing_within(self, seconds: float) -> bool:
        try:
            event = await self.next(seconds)
        except TimeoutError:
            return True
        raise AssertionError(f"unexpected event {event.event} {event.id} {event.data}")

    async def ended_within(self, seconds: float) -> bool:
        """The server ended the stream cleanly (the last chunk arrived) within ``seconds``."""
        try:
            await self.next(seconds)
        except StopAsyncIteration:
            return True
        return False


async def feed_since(http: httpx.AsyncClient, account: Account, since: str) -> dict[str, Any]:
    response = await http.get(
        f"/api/{account.id}/changes", params={"since": since, "limit": "1000"},
        headers=account.headers,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def newest_cursor(http: httpx.AsyncClient, account: Account) -> str:
    response = await http.get(f"/api/{account.id}/changes", headers=account.headers)
    assert response.status_code == 200, response.text
    cursor: str = response.json()["cursor"]
    return cursor


def as_change(event: ServerSentEvent) -> dict[str, Any]:
    change: dict[str, Any] = json.loads(event.data)
    assert event.event == f"task.{change['op']}"
    return change


async def create(http: httpx.AsyncClient, account: Account, title: str) -> dict[str, Any]:
    response = await http.post(account.tasks_url, json={"title": title}, headers=account.headers)
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


async def test_a_write_through_one_process_reaches_a_stream_on_the_other_within_a_second(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    a, b = clients
    account = await sign_up_via(a)
    async with events(b, account) as stream:
        assert stream.response.headers["content-type"] == "text/event-stream"
        assert stream.response.headers["cache-control"] == "no-store"
        latencies = []
        for number in range(5):
            started = time.monotonic()
            task = await create(a, account, f"live {number}")
            event = await stream.next(DELIVERY_SECONDS * 3)
            latencies.append(time.monotonic() - started)
            assert as_change(event) == {"op": "upsert", "task": task}
        assert max(latencies) < DELIVERY_SECONDS, latencies


async def test_lists_are_events_only_on_a_stream_that_asked_for_them(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    a, b = clients
    account = await sign_up_via(a)
    lists_url = f"/api/{account.id}/lists"
    async with (
        events(b, account, include="lists") as with_lists,
        events(b, account) as tasks_only,
    ):
        created = await a.post(lists_url, json={"name": "Errands"}, headers=account.headers)
        assert created.status_code == 201, created.text
        errands = created.json()
        event = await with_lists.next(DELIVERY_SECONDS * 3)
        assert event.event == "list.upsert"
        assert json.loads(event.data) == {"op": "list_upsert", "list": errands}
        response = await a.post(
            account.tasks_url,
            json={"title": "in errands", "list_id": errands["id"]},
            headers=account.headers,
        )
        task = response.json()
        assert as_change(await tasks_only.next(3)) == {"op": "upsert", "task": task}
        assert json.loads((await with_lists.next(3)).data)["task"]["list_id"] == errands["id"]

        deleted = await a.delete(f"{lists_url}/{errands['id']}", headers=account.headers)
        assert deleted.status_code == 204
        trashed, gone = await with_lists.take(2, 3)
        assert (trashed.event, json.loads(trashed.data)) == (
            "task.delete",
            {"op": "delete", "task_id": task["id"]},
        )
        assert (gone.event, json.loads(gone.data)) == (
            "list.delete",
            {"op": "list_delete", "list_id": errands["id"]},
        )
        assert as_change(await tasks_only.next(3)) == {"op": "delete", "task_id": task["id"]}
        assert await tasks_only.nothing_within(0.5)
        # One numbering: the list's event id resumes a stream like any other.
        assert int(gone.id) > int(trashed.id)


async def test_every_kind_of_write_is_an_event_carrying_what_the_feed_says(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    a, b = clients
    account = await sign_up_via(a)
    base = f"/api/{account.id}"
    start = await newest_cursor(a, account)
    async with events(b, account) as stream:
        task = await create(a, account, "first")
        tid = task["id"]
        writes = [
            ("PATCH", f"/tasks/{tid}", {"title": "renamed"}, "upsert"),
            ("PATCH", f"/tasks/{tid}/complete", None, "upsert"),
            ("DELETE", f"/tasks/{tid}", None, "delete"),
            ("POST", f"/trash/{tid}/restore", None, "upsert"),
            ("DELETE", f"/tasks/{tid}", None, "delete"),
            ("DELETE", f"/trash/{tid}", None, "delete"),
        ]
        received = [as_change(await stream.next())]
        for method, path, body, op in writes:
            response = await a.request(method, base + path, json=body, headers=account.headers)
            assert response.status_code in (200, 204), response.text
            change = as_change(await stream.next())
            assert change["op"] == op
            received.append(change)
        assert received[1]["task"]["title"] == "renamed"
        assert received[2]["task"]["completed"] is True
        assert received[4]["task"]["version"] == 5  # the trash and the restore each a version
        assert all(c.get("task_id", c.get("task", {}).get("id")) == tid for c in received)

    # Each event's id is the feed's cursor after it: asking the feed from one event's id gives
    # exactly the changes the stream sent after it.
    feed = await feed_since(a, account, start)
    assert feed["changes"] == [{"op": "delete", "task_id": tid}]  # its latest state only


async def test_a_stream_resumed_with_last_event_id_misses_nothing_and_repeats_nothing(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    a, b = clients
    account = await sign_up_via(a)
    tasks = [await create(a, account, f"t{n}") for n in range(4)]
    async with events(b, account, last_event_id="0") as stream:
        first = await stream.take(4)
    assert [as_change(e)["task"]["id"] for e in first] == [t["id"] for t in tasks]
    ids = [int(e.id) for e in first]
    assert ids == sorted(set(ids))

    # Cut after the second event; meanwhile one task changes, one is trashed, one is created.
    last_seen = first[1].id
    await a.patch(
        f"{account.tasks_url}/{tasks[0]['id']}", json={"title": "x"}, headers=account.headers
    )
    await a.delete(f"{account.tasks_url}/{tasks[3]['id']}", headers=account.headers)
    late = await create(a, account, "late")
    expected = (await feed_since(a, account, last_seen))["changes"]
    async with events(a, account, last_event_id=last_seen) as resumed:
        replayed = await resumed.take(len(expected))
        assert [as_change(e) for e in replayed] == expected
        assert [e.id for e in replayed] == sorted({e.id for e in replayed}, key=int)
        assert all(int(e.id) > int(last_seen) for e in replayed)
        assert await resumed.nothing_within(0.5)
    assert expected[-1] == {"op": "upsert", "task": late}
    assert {"op": "delete", "task_id": tasks[3]["id"]} in expected


async def test_streams_on_both_processes_converge_under_concurrent_writers(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    """Writers through both processes; a replica per process kept by its stream alone (one
    stream cut and resumed midway) ends equal to the server's list."""
    account = await sign_up_via(clients[0])
    known: list[str] = []
    replicas: list[dict[str, dict[str, Any]]] = [{}, {}]
    cursor = await newest_cursor(clients[0], account)

    def apply(replica: dict[str, dict[str, Any]], event: ServerSentEvent) -> None:
        change = as_change(event)
        if change["op"] == "upsert":
            replica[change["task"]["id"]] = change["task"]
        else:
            replica.pop(change["task_id"], None)

    async def follow(index: int, stop: asyncio.Event, cut_after: int | None) -> int:
        last_id, seen = cursor, 0
        while True:
            async with events(clients[index], account, last_event_id=last_id) as stream:
                while True:
                    try:
                        event = await stream.next(0.5)
                    except TimeoutError:
                        if stop.is_set():
                            return seen
                        continue
                    assert int(event.id) > int(last_id), "an event twice"
                    apply(replicas[index], event)
                    last_id, seen = event.id, seen + 1
                    if cut_after is not None and seen == cut_after:
                        cut_after = None
                        break  # reconnect with Last-Event-ID

    async def writer(number: int) -> None:
        rng = random.Random(number)
        for _ in range(25):
            await act(clients[number % 2], account, known, rng.choice(OPS[:6]), rng.randrange(99))

    stop = asyncio.Event()
    async with asyncio.timeout(120):
        followers = [asyncio.create_task(follow(0, stop, None)),
                     asyncio.create_task(follow(1, stop, 20))]  # fmt: skip
        await asyncio.sleep(0.2)
        await asyncio.gather(*(writer(n) for n in range(6)))
        await asyncio.sleep(DELIVERY_SECONDS)
        stop.set()
        seen = await asyncio.gather(*followers)

    expected = await server_tasks(clients[0], account)
    assert min(seen) > 20
    assert replicas[0] == expected
    assert replicas[1] == expected


async def test_the_per_user_cap_refuses_one_stream_more_and_frees_a_slot_on_close(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    a, _ = clients
    account, other = await sign_up_via(a), await sign_up_via(a)
    url = f"/api/{account.id}/events"
    async with events(a, account), events(a, account):
        async with events(a, account):
            refused = await a.get(url, headers=account.headers)
            assert refused.status_code == 429
            assert refused.json()["code"] == "too_many_streams"
            assert int(refused.headers["Retry-After"]) > 0
            # Streams of earlier tests may take a moment to be noticed gone.
            assert await open_streams_becomes(a, 3)
            async with events(a, other):  # another user's streams are not counted
                pass

        async def opens() -> bool:
            async with aconnect_sse(a, "GET", url, headers=account.headers) as source:
                return source.response.status_code == 200

        # The server frees the slot once it notices the client went.
        assert await eventually(opens, seconds=5)


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float) -> bool:
    """Whether ``check`` comes true within ``seconds`` (asked every 50 ms)."""
    async with asyncio.timeout(seconds):
        while True:
            if await check():
                return True
            await asyncio.sleep(0.05)


async def open_streams_becomes(http: httpx.AsyncClient, expected: int) -> bool:
    """Whether the server's event_streams_open gauge reads ``expected`` within 2 s."""
    sample = f"\nevent_streams_open {expected}.0\n"

    async def reads() -> bool:
        return sample in (await http.get("/metrics")).text

    return await eventually(reads, seconds=2)


async def test_errors_come_as_statuses_before_any_stream(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    a, _ = clients
    account, other = await sign_up_via(a), await sign_up_via(a)
    url = f"/api/{account.id}/events"
    cases = [
        ({}, 401, "not_authenticated"),
        (other.headers, 403, "forbidden"),
        (account.headers | {"Last-Event-ID": "seven"}, 422, "validation_error"),
        (account.headers | {"Last-Event-ID": "999999999"}, 410, "cursor_expired"),
    ]
    for headers, status, code in cases:
        response = await a.get(url, headers=headers)
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/json"
        assert response.json()["code"] == code


async def test_a_quiet_stream_sends_heartbeat_comments(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    a, _ = clients
    account = await sign_up_via(a)
    lines = []
    async with a.stream("GET", f"/api/{account.id}/events", headers=account.headers) as response:
        async with asyncio.timeout(HEARTBEAT_SECONDS * 3.5):
            async for line in response.aiter_lines():
                lines.append(line)
                if lines.count(": heartbeat") == 2:
                    break
    # No blank line after a heartbeat: a client must not see an empty event.
    assert lines == [": stream open", "", ": heartbeat", ": heartbeat"]


async def test_ending_the_session_ends_its_stream_before_any_later_change(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    a, b = clients
    account = await sign_up_via(a)
    login = await a.post(
        "/api/auth/login", json={"email": account.email, "password": account.password}
    )
    second = Account(account.id, account.email, account.password, login.json()["access_token"])
    async with events(b, account) as stream:
        ended = await a.delete("/api/auth/sessions", headers=second.headers)  # all but mine
        assert ended.status_code == 204
        await create(a, second, "after the end")
        assert await stream.ended_within(HEARTBEAT_SECONDS + DELIVERY_SECONDS)
    refused = await b.get(f"/api/{account.id}/events", headers=account.headers)
    assert refused.status_code == 401


async def test_shutdown_ends_open_streams_cleanly_within_the_grace_period(
    database_url: str, tmp_path: Path
) -> None:
    server = AppServer(database_url=database_url, root=tmp_path, env=SERVER_ENV)
    with server.serving():
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
            account = await sign_up_via(http)
            async with events(http, account) as first, events(http, account) as second:
                assert server.process is not None
                stopped = time.monotonic()
                server.process.terminate()
                assert await first.ended_within(2)  # the last chunk, not a cut connection
                assert await second.ended_within(2)
                await asyncio.to_thread(server.process.wait, 10)
                took = time.monotonic() - stopped
    assert server.process.returncode == 0
    assert took < 2, took  # SHUTDOWN_GRACE_SECONDS: nothing waited for it to run out
    assert "timeout graceful shutdown exceeded" not in server.log_text()
    assert server.log_text().count('"reason":"shutdown"') == 2


@asynccontextmanager
async def serving_beside(server: AppServer) -> AsyncIterator[AppServer]:
    """Started and stopped in a thread, so that this loop goes on serving the proxy the
    server's listener connects through."""
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


async def test_a_change_missed_while_the_listener_was_away_arrives_when_it_is_back(
    database_url: str, tmp_path: Path
) -> None:
    """The listening connection goes through a proxy that cuts it: a change committed meanwhile
    notifies no one here, and reaches the open stream once the listener reconnects."""
    async with running_proxy(database_url) as proxy:
        env = SERVER_ENV | {"DATABASE_LISTEN_URL": proxy.url}
        async with (
            serving_beside(AppServer(database_url=database_url, root=tmp_path, env=env)) as server,
            httpx.AsyncClient(base_url=server.base_url, timeout=10) as http,
        ):
            account = await sign_up_via(http)
            async with events(http, account) as stream:
                await proxy.refuse()  # cut, and no reconnect gets through
                task = await create(http, account, "while nobody listened")
                assert await stream.nothing_within(1.5)
                await proxy.forward()
                event = await stream.next(10)  # the listener's backoff, then the wake
                assert as_change(event) == {"op": "upsert", "task": task}


async def ready_within(http: httpx.AsyncClient, seconds: float) -> bool:
    async def ready() -> bool:
        return (await http.get("/health/db")).status_code == 200

    return await eventually(ready, seconds)


async def test_a_process_without_its_listener_for_long_ends_its_streams_and_opens_none(
    database_url: str, tmp_path: Path
) -> None:
    """Its streams would stay silent: they end (the clients go to a replica that listens), and a
    new one is 503 until the listener is back."""
    async with running_proxy(database_url) as proxy:
        env = SERVER_ENV | {"DATABASE_LISTEN_URL": proxy.url}
        server = AppServer(database_url=database_url, root=tmp_path, env=env)
        async with (
            serving_beside(server),
            httpx.AsyncClient(base_url=server.base_url, timeout=10) as http,
        ):
            account = await sign_up_via(http)
            async with events(http, account) as stream:
                await proxy.refuse()
                # Down for LOST_TOO_LONG_SECONDS (10 s), then the next heartbeat ends it.
                assert await stream.ended_within(10 + HEARTBEAT_SECONDS * 3)
            refused = await http.get(f"/api/{account.id}/events", headers=account.headers)
            assert refused.status_code == 503
            assert refused.json()["code"] == "live_updates_unavailable"
            assert int(refused.headers["Retry-After"]) > 0
            await proxy.forward()
            assert await ready_within(http, 15)
            async with events(http, account) as again:
                task = await create(http, account, "heard again")
                assert as_change(await again.next(DELIVERY_SECONDS * 3))["task"] == task
    assert '"reason":"not_listening"' in server.log_text()


async def test_a_stream_resumed_from_a_paged_full_sync_keeps_its_floor_in_each_id(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    """A /changes cursor taken in the middle of a paged full sync carries where the sync began
    (its floor); the events up to that point carry it too, so resuming from one of them is
    that same cursor."""
    a, _ = clients
    account = await sign_up_via(a)
    for number in range(3):
        await create(a, account, f"t{number}")
    first = await a.get(
        f"/api/{account.id}/changes", params={"limit": "1"}, headers=account.headers
    )
    cursor = first.json()["cursor"]
    after, floor = (int(part) for part in cursor.split("."))
    assert floor > after  # a paged full sync: the cursor holds its floor
    async with events(a, account, last_event_id=cursor) as stream:
        rest = await stream.take(2)
        later = await create(a, account, "live")
        live = await stream.next()
    caught_up_to, _, kept_floor = rest[0].id.partition(".")
    assert after < int(caught_up_to) < floor
    assert int(kept_floor) == floor
    assert rest[1].id == str(floor)  # the sync's last change: no floor left to keep
    assert as_change(live)["task"] == later
    assert int(live.id) > floor
