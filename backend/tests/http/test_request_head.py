"""Limits on request heads, which the server's HTTP protocol enforces before the app sees a
request (app/http/server_protocol.py): size, target length and deadlines, over raw sockets.

Each test runs against ``python -m app serve`` (the production wiring: the protocol named in
cli.py, its limits from the environment) and against uvicorn serving the app in this process
with the same protocol class, the one run the coverage report can see.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from app.http.security_headers import SECURITY_HEADERS
from app.http.server_protocol import GuardedHttpToolsProtocol, HeadLimits
from app.main import create_app
from tests.fixtures.app import make_settings
from tests.fixtures.processes import AppServer, free_port
from tests.fixtures.raw_http import Connection, Response, connect

# Real servers and waits of seconds: scheduled first (see conftest.py).
pytestmark = pytest.mark.slow

MAX_HEAD = 32 * 1024
MAX_TARGET = 8 * 1024
DEADLINE = 1.0
LIMITS_ENV = {
    "MAX_REQUEST_HEAD_BYTES": str(MAX_HEAD),
    "MAX_REQUEST_TARGET_BYTES": str(MAX_TARGET),
    "REQUEST_HEAD_TIMEOUT_SECONDS": str(DEADLINE),
}
# A deadline's close never comes early; on a busy machine it may come this much late.
EARLY = 0.1
LATE = 1.5
# The longest any read waits, so a server that never answers fails the test instead of hanging.
WAIT = DEADLINE + LATE + 2.0
MIB = 1024 * 1024


@dataclass(frozen=True)
class Served:
    port: int
    pid: int | None = None  # the server process, when it is one


@pytest.fixture(scope="module")
def process_server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("request-head")
    with AppServer(database_url=database_url, root=root, env=LIMITS_ENV).serving() as server:
        assert server.process is not None
        yield Served(server.port, server.process.pid)


@pytest.fixture(scope="module")
def in_process_server(database_url: str) -> Iterator[Served]:
    settings = make_settings(
        database_url,
        max_request_head_bytes=MAX_HEAD,
        max_request_target_bytes=MAX_TARGET,
        request_head_timeout_seconds=DEADLINE,
    )

    class Protocol(GuardedHttpToolsProtocol):
        limits = HeadLimits.from_settings(settings)

    port = free_port()
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http=Protocol,
        log_config=None,
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    started = time.monotonic()
    while not server.started:
        assert thread.is_alive(), "the in-process server did not start"
        assert time.monotonic() - started < 30, "the in-process server did not start in 30 s"
        time.sleep(0.05)
    try:
        yield Served(port)
    finally:
        server.should_exit = True
        thread.join(15)


@pytest.fixture(scope="module", params=["process", "in_process"])
def server(request: pytest.FixtureRequest) -> Served:
    served: Served = request.getfixturevalue(f"{request.param}_server")
    return served


def request_head(target: str = "/health", size: int | None = None, headers: bytes = b"") -> bytes:
    """A GET head, padded with an X-Pad header to exactly ``size`` bytes if given."""
    head = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode() + headers
    if size is None:
        return head + b"\r\n"
    pad = size - len(head) - len(b"X-Pad: \r\n\r\n")
    assert pad >= 0
    return head + b"X-Pad: " + b"p" * pad + b"\r\n\r\n"


def assert_refused(response: Response | None, status: int, code: str) -> None:
    """The app's error body and headers, and the promise to close."""
    assert response is not None
    assert response.status == status, response
    assert response.headers["content-type"] == "application/json"
    assert response.headers["connection"] == "close"
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name.lower()] == value
    body = response.json()
    assert isinstance(body, dict)
    assert set(body) == {"detail", "code"}
    assert body["code"] == code


def test_a_header_over_the_limit_gets_431_and_the_connection_closes(server: Served) -> None:
    with connect(server.port) as connection:
        connection.send(request_head(headers=b"X-Big: " + b"b" * (64 * 1024) + b"\r\n"))
        assert_refused(connection.response(), 431, "request_header_too_large")
        assert connection.closed_within(WAIT)
    with connect(server.port) as connection:  # the server itself carries on
        connection.send(request_head())
        response = connection.response()
        assert response is not None
        assert response.status == 200


def test_twenty_thousand_small_headers_get_431(server: Served) -> None:
    headers = b"".join(b"X-%d: v\r\n" % number for number in range(20_000))
    with connect(server.port) as connection:
        connection.send(request_head(headers=headers))
        assert_refused(connection.response(), 431, "request_header_too_large")
        assert connection.closed_within(WAIT)


def test_the_head_limit_is_exact_for_the_request_line_and_headers_together(
    server: Served,
) -> None:
    with connect(server.port) as connection:
        connection.send(request_head(size=MAX_HEAD))
        response = connection.response()
        assert response is not None
        assert response.status == 200
    with connect(server.port) as connection:
        connection.send(request_head(size=MAX_HEAD + 1))
        assert_refused(connection.response(), 431, "request_header_too_large")


def test_a_target_over_its_limit_gets_414(server: Served) -> None:
    exactly = "/health?pad=" + "t" * (MAX_TARGET - len("/health?pad="))
    with connect(server.port) as connection:
        connection.send(request_head(exactly))
        response = connection.response()
        assert response is not None
        assert response.status == 200
    for target in (exactly + "t", "/" + "a" * (64 * 1024)):
        with connect(server.port) as connection:
            connection.send(request_head(target))
            assert_refused(connection.response(), 414, "request_target_too_long")
            assert connection.closed_within(WAIT)


@pytest.mark.parametrize("target", ["/health%2Fdb", "/health%2fdb", "/api/x%2F..%2Fauth/me"])
def test_an_encoded_slash_in_the_path_is_not_decoded_into_another_route(
    server: Served, target: str
) -> None:
    with connect(server.port) as connection:
        connection.send(request_head(target))  # decoded, "/health/db" would answer 200
        assert_refused(connection.response(), 404, "not_found")


def test_an_encoded_slash_in_the_query_is_fine(server: Served) -> None:
    with connect(server.port) as connection:
        connection.send(request_head("/health?next=%2Fhome"))
        response = connection.response()
        assert response is not None
        assert response.status == 200


def test_the_head_limit_is_per_request_on_a_keep_alive_connection(server: Served) -> None:
    with connect(server.port) as connection:
        for _ in range(3):  # together well over the limit
            connection.send(request_head(size=MAX_HEAD * 6 // 10))
            response = connection.response()
            assert response is not None
            assert response.status == 200
        connection.send(request_head(size=MAX_HEAD * 12 // 10))
        assert_refused(connection.response(), 431, "request_header_too_large")
        assert connection.closed_within(WAIT)


def test_pipelined_requests_are_answered_and_an_oversized_one_among_them_is_not(
    server: Served,
) -> None:
    with connect(server.port) as connection:
        connection.send(
            request_head() + request_head() + request_head(size=MAX_HEAD * 2) + request_head()
        )
        statuses = []
        while (response := connection.response()) is not None:
            statuses.append(response.status)
        # The third is refused once the first two are answered, or, when they are still being
        # answered, the connection closes after them; either way nothing after it is served.
        assert statuses in ([200, 200, 431], [200, 200])
        assert connection.closed_within(WAIT)


# A request the growing head below is pipelined behind, and its status: without a body, and
# with one (an empty JSON object, which login refuses).
EARLIER_REQUESTS = {
    "without_body": (request_head(), 200),
    "with_body": (
        b"POST /api/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
        422,
    ),
}


@pytest.mark.parametrize("earlier", EARLIER_REQUESTS)
def test_a_pipelined_head_that_keeps_growing_is_refused_after_the_requests_before_it(
    server: Served, earlier: str
) -> None:
    request, status = EARLIER_REQUESTS[earlier]
    with connect(server.port) as connection:
        connection.send(request + request + b"GET /health HTTP/1.1\r\nX-Long: ")
        # More than one read (uvloop reads at most 256,000 bytes) past the limit.
        for _ in range((256_000 + 2 * MAX_HEAD) // 1024):
            if not connection.send(b"l" * 1024):
                break
        sent = time.monotonic()
        statuses = []
        while (response := connection.response()) is not None:
            statuses.append(response.status)
        # Refused once the two are answered, or, when they are still being answered, the
        # connection closes after them; either way the growing head is never served.
        assert statuses in ([status, status, 431], [status, status])
        assert connection.closed_within(WAIT)
        elapsed = time.monotonic() - sent
    assert elapsed < LATE  # at once, not at a deadline or uvicorn's 5 s keep-alive timeout


def test_a_malformed_head_still_gets_the_servers_400(server: Served) -> None:
    with connect(server.port) as connection:
        connection.send(b"GET /health HTTP/1.1\r\nNo colon here\r\n\r\n")
        response = connection.response()
        assert response is not None
        assert response.status == 400
        assert connection.closed_within(WAIT)


def test_upgrade_requests_are_handled_as_before(server: Served) -> None:
    websocket = (
        b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    )
    with connect(server.port) as connection:
        connection.send(request_head(headers=websocket))
        response = connection.response()
        assert response is not None
        assert response.status == 403  # the handshake reaches the app, which has no such route
    with connect(server.port) as connection:
        connection.send(request_head(headers=b"Connection: Upgrade\r\nUpgrade: h2c\r\n"))
        response = connection.response()
        assert response is not None
        assert response.status == 200  # a protocol uvicorn does not speak: plain HTTP/1.1


def test_an_unfinished_head_gets_408_and_is_closed_at_the_deadline(server: Served) -> None:
    with connect(server.port) as connection:
        started = time.monotonic()
        connection.send(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert connection.closed_within(WAIT)
        elapsed = time.monotonic() - started
        assert_refused(connection.response(), 408, "request_timeout")
    assert DEADLINE - EARLY <= elapsed <= DEADLINE + LATE


def test_a_connection_that_sends_nothing_is_closed_at_the_deadline(server: Served) -> None:
    started = time.monotonic()
    with connect(server.port) as connection:
        assert connection.closed_within(WAIT)
        elapsed = time.monotonic() - started
        assert connection.received == b""  # no request, so no answer
    assert DEADLINE - EARLY <= elapsed <= DEADLINE + LATE


def test_a_head_sent_a_byte_at_a_time_is_closed_at_the_deadline(server: Served) -> None:
    head = request_head(headers=b"X-Slow: " + b"s" * 200 + b"\r\n")
    with connect(server.port) as connection:
        started = time.monotonic()
        for byte in head:  # 5 bytes a second: the whole head would take a minute
            if not connection.send(bytes([byte])) or connection.closed_within(0.2):
                break
            if time.monotonic() - started > WAIT:
                break
        elapsed = time.monotonic() - started
        assert connection.closed_within(0.5)
    assert DEADLINE - EARLY <= elapsed <= DEADLINE + LATE


def test_each_head_on_a_keep_alive_connection_has_its_own_deadline(server: Served) -> None:
    with connect(server.port) as connection:
        for _ in range(2):  # the second starts after the first head's deadline
            connection.send(request_head())
            response = connection.response()
            assert response is not None
            assert response.status == 200
            time.sleep(DEADLINE * 0.7)
        started = time.monotonic()
        connection.send(b"GET /health HTTP/1.1\r\n")
        assert connection.closed_within(WAIT)
        elapsed = time.monotonic() - started
        assert_refused(connection.response(), 408, "request_timeout")
    assert DEADLINE - EARLY <= elapsed <= DEADLINE + LATE


def _rss_bytes(pid: int) -> int:
    """Resident memory of a process and its descendants."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(FileNotFoundError):
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            for task in Path(f"/proc/{current}").glob("task/*/children"):
                pending += [int(child) for child in task.read_text().split()]
    return total


def test_endless_headers_leave_the_server_memory_bounded(process_server: Served) -> None:
    assert process_server.pid is not None
    with connect(process_server.port) as warm_up:
        warm_up.send(request_head())
        assert warm_up.response() is not None
    before = _rss_bytes(process_server.pid)
    connections = [Connection(process_server.port) for _ in range(2)]

    def stream_a_header(connection: Connection) -> None:
        connection.send(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Endless: ")
        chunk = b"e" * (64 * 1024)
        for _ in range(16 * MIB // len(chunk)):  # 16 MiB, unless the server stops it first
            if not connection.send(chunk):
                break

    senders = [threading.Thread(target=stream_a_header, args=(c,)) for c in connections]
    try:
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(60)
        grown = _rss_bytes(process_server.pid) - before
        assert grown < 4 * MIB, f"the server grew by {grown / MIB:.1f} MiB"
        for connection in connections:
            assert_refused(connection.response(), 431, "request_header_too_large")
            assert connection.closed_within(WAIT)
    finally:
        for connection in connections:
            connection.close()


def test_every_worker_process_applies_the_limits(database_url: str, tmp_path: Path) -> None:
    env = {**LIMITS_ENV, "WEB_CONCURRENCY": "2"}
    with AppServer(database_url=database_url, root=tmp_path, env=env).serving() as server:
        assert server.process is not None
        connections = [Connection(server.port) for _ in range(8)]
        try:
            started = time.monotonic()
            for connection in connections:
                connection.send(b"GET /health HTTP/1.1\r\n")
            for connection in connections:
                assert connection.closed_within(WAIT)
                assert_refused(connection.response(), 408, "request_timeout")
            elapsed = time.monotonic() - started
            with connect(server.port) as connection:
                connection.send(request_head(headers=b"X-Big: " + b"b" * MAX_HEAD + b"\r\n"))
                assert_refused(connection.response(), 431, "request_header_too_large")
        finally:
            for connection in connections:
                connection.close()
        children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
        assert len(children.read_text().split()) >= 2
    # Not the 10 s default: each worker read the limits from its environment.
    assert elapsed <= DEADLINE + LATE
