"""Database faults under a real server process: restarts, killed connections, an unreachable
database, an exhausted pool, clients that hang up, and durability of acknowledged writes.

Every test talks HTTP to ``python -m app serve`` and checks what the client saw AND what the
database holds.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import httpx
import orjson
import pytest

from tests.fixtures.accounts import Account
from tests.fixtures.cluster import (
    StartServer,
    app_sessions,
    create_database,
    fetch,
    http_client,
    install_slow_trigger,
    sign_up_over_http,
    titles_in_database,
)
from tests.fixtures.processes import AppServer, PostgresCluster

# Tens of seconds of real processes or waiting: scheduled first (see conftest.py).
pytestmark = pytest.mark.slow

POOL_SIZE = 3
MAX_OVERFLOW = 2
POOL_TIMEOUT_SECONDS = 2.0
CONNECT_TIMEOUT_SECONDS = 1.0
# The service under test: a small pool so leaks and exhaustion show, short timeouts so the
# outage tests are quick.
SERVICE_ENV = {
    "DB_POOL_SIZE": str(POOL_SIZE),
    "DB_MAX_OVERFLOW": str(MAX_OVERFLOW),
    "DB_POOL_TIMEOUT_SECONDS": str(POOL_TIMEOUT_SECONDS),
    "DB_CONNECT_TIMEOUT_SECONDS": str(CONNECT_TIMEOUT_SECONDS),
}
SETTLE_SECONDS = 20.0


@dataclass(frozen=True)
class Service:
    server: AppServer
    database_url: str
    account: Account


@pytest.fixture(scope="module")
async def service(pg_cluster: PostgresCluster, start_server: StartServer) -> Service:
    database_url = await create_database(pg_cluster.url())
    server = start_server(database_url, SERVICE_ENV)
    await install_slow_trigger(database_url)
    async with http_client(server) as http:
        account = await sign_up_over_http(http)
    return Service(server=server, database_url=database_url, account=account)


@pytest.fixture
async def http(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(service.server) as client:
        yield client


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def assert_unavailable(response: httpx.Response, code: str = "database_unavailable") -> None:
    assert response.status_code == 503, response.text
    assert response.json()["code"] == code
    assert response.headers["Retry-After"].isdigit()


async def create_task(
    http: httpx.AsyncClient, account: Account, title: str, request_id: str | None = None
) -> tuple[httpx.Response, float]:
    headers = {**account.headers, **({"X-Request-ID": request_id} if request_id else {})}
    started = time.monotonic()
    response = await http.post(account.tasks_url, json={"title": title}, headers=headers)
    return response, time.monotonic() - started


async def wait_for_active_inserts(database_url: str, count: int) -> list[int]:
    """The pids of the service's sessions busy in an INSERT, once there are ``count``."""
    deadline = time.monotonic() + 10
    while True:
        sessions = await app_sessions(database_url)
        pids = [
            row["pid"]
            for row in sessions
            if row["state"] == "active" and row["query"].lstrip().upper().startswith("INSERT")
        ]
        if len(pids) == count:
            return pids
        assert time.monotonic() < deadline, f"expected {count} running inserts: {sessions}"
        await asyncio.sleep(0.05)


async def pool_checked_out(http: httpx.AsyncClient) -> float:
    """The service's ``db_pool_checked_out`` gauge from /metrics (one worker)."""
    response = await http.get("/metrics")
    assert response.status_code == 200
    for line in response.text.splitlines():
        if line.startswith("db_pool_checked_out{"):
            return float(line.split()[1])
    raise AssertionError("db_pool_checked_out is not in /metrics")


async def wait_until_settled(database_url: str, http: httpx.AsyncClient) -> tuple[list[str], float]:
    """The states of the service's sessions and its checked-out connections, once no session
    is busy and nothing is checked out (or the bounded wait is over)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        states = [row["state"] for row in await app_sessions(database_url)]
        checked_out = await pool_checked_out(http)
        settled = all(state == "idle" for state in states) and checked_out == 0
        if settled or time.monotonic() > deadline:
            return states, checked_out
        await asyncio.sleep(0.1)


async def test_restart_while_idle_is_invisible_to_the_next_requests(
    service: Service, http: httpx.AsyncClient, pg_cluster: PostgresCluster
) -> None:
    account = service.account
    # Fill the pool with connections that the restart will make stale.
    warm = await asyncio.gather(
        *(http.get(account.tasks_url, headers=account.headers) for _ in range(POOL_SIZE))
    )
    assert [r.status_code for r in warm] == [200] * POOL_SIZE
    before = {row["pid"] for row in await app_sessions(service.database_url)}
    assert before

    await asyncio.to_thread(pg_cluster.restart, "fast")

    titles = [unique("after-restart") for _ in range(10)]
    statuses = []
    for title in titles:
        statuses.append((await create_task(http, account, title))[0].status_code)
        statuses.append((await http.get(account.tasks_url, headers=account.headers)).status_code)
    assert statuses == [201, 200] * 10
    assert await titles_in_database(service.database_url, titles) == set(titles)
    after = {row["pid"] for row in await app_sessions(service.database_url)}
    assert after
    assert not after & before  # every connection in use is a new one


async def test_connection_killed_mid_request_gives_503_and_writes_nothing(
    service: Service, http: httpx.AsyncClient
) -> None:
    account = service.account
    titles = [f"slow:30:{unique('killed')}" for _ in range(3)]
    requests = [asyncio.create_task(create_task(http, account, title)) for title in titles]
    pids = await wait_for_active_inserts(service.database_url, len(titles))

    terminated = await fetch(
        service.database_url,
        "SELECT pg_terminate_backend(pid) AS done FROM unnest($1::int[]) AS pid",
        pids,
    )
    assert [row["done"] for row in terminated] == [True] * len(titles)
    for response, elapsed in await asyncio.gather(*requests):
        assert_unavailable(response)
        assert elapsed < 10  # answered when the connection died, not after the 30 s insert
    assert await titles_in_database(service.database_url, titles) == set()

    title = unique("after-kill")
    response, _ = await create_task(http, account, title)
    assert response.status_code == 201, response.text
    assert await titles_in_database(service.database_url, [title]) == {title}


async def test_stopped_database_gives_fast_503_and_recovers_without_restart(
    service: Service, http: httpx.AsyncClient, pg_cluster: PostgresCluster
) -> None:
    account = service.account
    await asyncio.to_thread(pg_cluster.stop, "fast")
    try:
        for _ in range(3):  # ConnectionRefusedError from the driver, not wrapped by the ORM
            response, elapsed = await create_task(http, account, unique("while-down"))
            assert_unavailable(response)
            assert elapsed < CONNECT_TIMEOUT_SECONDS + POOL_TIMEOUT_SECONDS
        started = time.monotonic()
        readiness = await http.get("/health/db")
        assert time.monotonic() - started < 2
        assert readiness.status_code == 503
        assert readiness.json()["code"] == "database_unavailable"
        liveness = await http.get("/health")
        assert liveness.status_code == 200
        assert liveness.json()["database"] == "disconnected"
    finally:
        await asyncio.to_thread(pg_cluster.start)

    title = unique("back-up")
    response, _ = await create_task(http, account, title)
    assert response.status_code == 201, response.text
    assert (await http.get("/health/db")).status_code == 200
    assert await titles_in_database(service.database_url, [title]) == {title}


@contextlib.contextmanager
def black_hole(port: int) -> Iterator[None]:
    """Take ``port`` over with a socket that completes TCP handshakes and never answers:
    a database host that drops packets, so connecting can only time out."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(128)
    try:
        yield
    finally:
        listener.close()


async def test_unanswering_database_gives_503_within_the_connect_timeout(
    service: Service, http: httpx.AsyncClient, pg_cluster: PostgresCluster
) -> None:
    account = service.account
    await asyncio.to_thread(pg_cluster.stop, "fast")
    try:
        with black_hole(pg_cluster.port):
            # TimeoutError from the driver's connect, not asyncpg's 60 s default.
            response, elapsed = await create_task(http, account, unique("black-hole"))
            assert_unavailable(response, code="database_timeout")
            assert (
                CONNECT_TIMEOUT_SECONDS * 0.8
                < elapsed
                < (CONNECT_TIMEOUT_SECONDS + POOL_TIMEOUT_SECONDS)
            )
            started = time.monotonic()
            readiness = await http.get("/health/db")
            assert time.monotonic() - started < 2
            assert readiness.status_code == 503
    finally:
        await asyncio.to_thread(pg_cluster.start)

    response, _ = await create_task(http, account, unique("back-up"))
    assert response.status_code == 201, response.text


async def test_exhausted_pool_gives_503_after_the_pool_timeout(
    pg_cluster: PostgresCluster, start_server: StartServer
) -> None:
    database_url = await create_database(pg_cluster.url())
    server = start_server(
        database_url,
        {"DB_POOL_SIZE": "1", "DB_MAX_OVERFLOW": "1", "DB_POOL_TIMEOUT_SECONDS": "1"},
    )
    await install_slow_trigger(database_url)
    async with http_client(server) as http:
        account = await sign_up_over_http(http)
        titles = [f"slow:5:{unique('holder')}" for _ in range(2)]
        holders = [asyncio.create_task(create_task(http, account, title)) for title in titles]
        await wait_for_active_inserts(database_url, 2)  # both pooled connections are busy

        started = time.monotonic()
        extra = await http.get(account.tasks_url, headers=account.headers)
        elapsed = time.monotonic() - started
        assert_unavailable(extra)
        assert 0.8 < elapsed < 4  # the 1 s pool timeout, not the 5 s the holders take

        assert [r.status_code for r, _ in await asyncio.gather(*holders)] == [201, 201]
        assert (await http.get(account.tasks_url, headers=account.headers)).status_code == 200
    assert await titles_in_database(database_url, titles) == set(titles)


async def _hang_up(port: int, request: bytes, linger: float) -> None:
    """Send ``request`` (possibly incomplete) and close the socket without reading."""
    _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    try:
        writer.write(request)
        await writer.drain()
        await asyncio.sleep(linger)
    finally:
        writer.transport.abort()  # RST, like a client that gave up


def _raw_request(method: str, path: str, token: str, body: bytes = b"", length: int = 0) -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length or len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def test_clients_hanging_up_mid_request_leave_no_session_or_connection_behind(
    service: Service, http: httpx.AsyncClient
) -> None:
    account, port = service.account, int(service.server.base_url.rsplit(":", 1)[1])
    rng = random.Random(6)
    log_offset = len(service.server.log_text())
    requests = []
    for i in range(500):
        kind = i % 3
        if kind == 0:  # a write that takes a while; the client leaves during it
            body = f'{{"title": "slow:0.05:hangup-{i}"}}'.encode()
            request = _raw_request("POST", account.tasks_url, account.token, body)
        elif kind == 1:  # a read
            request = _raw_request("GET", account.tasks_url, account.token)
        else:  # a body that never arrives in full
            request = _raw_request("POST", account.tasks_url, account.token, b'{"ti', length=40)
        requests.append(_hang_up(port, request, linger=rng.uniform(0, 0.03)))
    for start in range(0, len(requests), 50):
        await asyncio.gather(*requests[start : start + 50])

    states, checked_out = await wait_until_settled(service.database_url, http)
    assert "idle in transaction" not in states
    assert set(states) <= {"idle"}
    assert checked_out == 0
    # Every pooled connection can still be checked out: pool size + overflow concurrent
    # requests, each holding its connection for 1 s, all succeed within the 2 s pool timeout.
    titles = [f"slow:1:{unique('after-hangups')}" for _ in range(POOL_SIZE + MAX_OVERFLOW)]
    responses = await asyncio.gather(*(create_task(http, account, title) for title in titles))
    assert [r.status_code for r, _ in responses] == [201] * len(titles)
    assert await titles_in_database(service.database_url, titles) == set(titles)
    new_log = service.server.log_text()[log_offset:]
    assert '"status":500' not in new_log
    assert "unhandled_error" not in new_log


CONNECTION_LOST_MID_STATEMENT = {
    "ConnectionDoesNotExistError",  # the socket closed while the statement was in flight
    "AdminShutdownError",  # 57P01: "terminating connection due to administrator command"
    "CrashShutdownError",  # 57P02
    "ConnectionResetError",
}


@dataclass
class WriteLoad:
    acked: dict[str, str] = field(default_factory=dict)  # title -> id
    failed: dict[str, int] = field(default_factory=dict)  # title -> status
    lost_in_transit: list[str] = field(default_factory=list)


def _json_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("{")]


async def _writer(
    http: httpx.AsyncClient, account: Account, load: WriteLoad, stop: asyncio.Event, n: int
) -> None:
    sequence = 0
    while not stop.is_set():
        sequence += 1
        title = unique(f"w{n}-{sequence}")
        try:
            response, _ = await create_task(http, account, title, request_id=title)
        except httpx.TransportError:
            load.lost_in_transit.append(title)
            continue
        if response.status_code == 201:
            load.acked[title] = response.json()["id"]
        else:
            load.failed[title] = response.status_code
            await asyncio.sleep(0.05)  # a client backing off a little


async def test_acknowledged_writes_survive_database_restarts(
    service: Service, http: httpx.AsyncClient, pg_cluster: PostgresCluster
) -> None:
    account, load, stop = service.account, WriteLoad(), asyncio.Event()
    writers = [asyncio.create_task(_writer(http, account, load, stop, n)) for n in range(4)]
    try:
        # Three fast shutdowns, then one crash (immediate: no checkpoint, WAL replay).
        for mode in ("fast", "fast", "fast", "immediate"):
            await asyncio.sleep(3)
            await asyncio.to_thread(pg_cluster.restart, mode)
        await asyncio.sleep(2)
    finally:
        stop.set()
        await asyncio.gather(*writers)

    readable = 0
    acked = list(load.acked.items())
    for start in range(0, len(acked), 25):
        chunk = acked[start : start + 25]
        responses = await asyncio.gather(
            *(
                http.get(f"{account.tasks_url}/{task_id}", headers=account.headers)
                for _, task_id in chunk
            )
        )
        for (title, _), response in zip(chunk, responses, strict=True):
            assert response.status_code == 200, (title, response.text)
            assert response.json()["title"] == title
            readable += 1
    in_database = await titles_in_database(service.database_url, list(load.acked))
    left_by_failures = await titles_in_database(service.database_url, list(load.failed))
    # Why each write failed, from the server's log (each write's request id is its title).
    causes = {
        record["request_id"]: record["error_type"]
        for record in map(orjson.loads, _json_lines(service.server.log_text()))
        if record.get("event") == "database_error" and record.get("request_id") in load.failed
    }
    print(
        f"\nwrites: acked={len(load.acked)} failed={len(load.failed)} "
        f"lost_in_transit={len(load.lost_in_transit)} found={len(in_database)} "
        f"readable={readable} rows_left_by_failures={len(left_by_failures)} "
        f"causes={sorted(collections.Counter(causes.values()).items())}"
    )
    assert load.acked, "the load made no successful write"
    assert load.failed, "the restarts never hit a request; the test proved nothing"
    assert set(load.failed.values()) == {503}
    assert in_database == set(load.acked)
    assert set(causes) == set(load.failed)
    # A 503 leaves no row, except when the server went away with the INSERT in flight: it may
    # have committed it and died before replying (no idempotency keys yet; see the README).
    assert {causes[title] for title in left_by_failures} <= CONNECTION_LOST_MID_STATEMENT
    assert load.lost_in_transit == []
