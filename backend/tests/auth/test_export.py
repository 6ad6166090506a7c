"""GET /api/auth/me/export: the account and every task of it as one JSON document, from one
snapshot, streamed in batches so its size never sits in memory."""

from __future__ import annotations

import asyncio
import re
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.export import BATCH_SIZE
from app.db.database import Database
from app.settings import Settings
from tests.fixtures.accounts import ME_URL, Account, SignUp, bearer
from tests.fixtures.cluster import (
    StartServer,
    create_database,
    fetch,
    http_client,
    sign_up_over_http,
    via,
)
from tests.fixtures.processes import AppServer, PgBouncer, PostgresCluster
from tests.fixtures.tasks import TASK_FIELDS, create_task, parse_time

EXPORT_URL = "/api/auth/me/export"
LARGE = 100_000
PREPARED_STATEMENT_ERROR = re.compile(r"prepared statement", re.IGNORECASE)

# The users a test leaves through `client` are deleted after it (see fixtures/app.py).
pytestmark = pytest.mark.usefixtures("clean_database")


async def stored_tasks(engine: AsyncEngine, user_id: str) -> list[dict[str, Any]]:
    """The user's tasks as committed, in the export's order."""
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                text("SELECT * FROM tasks WHERE user_id = :id ORDER BY created_at, id"),
                {"id": uuid.UUID(user_id)},
            )
        ).mappings()
        return [dict(row) for row in rows]


async def insert_tasks(engine: AsyncEngine, user_id: str, count: int) -> None:
    """``count`` tasks in one statement, a second apart, every third described and every
    other one completed."""
    async with engine.begin() as connection:
        # 100,000 rows through the change trigger and the search index: more than the test
        # engine's statement timeout allows one statement on a busy machine.
        await connection.execute(text("SET LOCAL statement_timeout = '120s'"))
        await connection.execute(
            text(
                "INSERT INTO tasks (user_id, title, description, completed, completed_at,"
                " created_at)"
                " SELECT :id, 'task ' || n, CASE WHEN n % 3 = 0 THEN 'notes on ' || n END,"
                " n % 2 = 0, CASE WHEN n % 2 = 0 THEN now() END,"
                " now() - make_interval(secs => n)"
                " FROM generate_series(1, :count) AS n"
            ),
            {"id": uuid.UUID(user_id), "count": count},
        )


def assert_matches_row(task: dict[str, Any], row: dict[str, Any]) -> None:
    assert set(task) == {*TASK_FIELDS, "deleted_at"}
    assert task["id"] == str(row["id"])
    assert task["user_id"] == str(row["user_id"])
    assert task["title"] == row["title"]
    assert task["description"] == row["description"]
    assert task["completed"] is row["completed"]
    for name in ("created_at", "updated_at", "completed_at", "deleted_at"):
        if row[name] is None:
            assert task[name] is None
        else:
            assert parse_time(task[name]) == row[name]


# --- the document --------------------------------------------------------------------------


async def test_the_export_is_the_account_and_every_task_as_stored(
    client: httpx.AsyncClient, new_account: Account, engine: AsyncEngine
) -> None:
    created = [
        await create_task(client, new_account, "Buy milk"),
        await create_task(client, new_account, "Write «letters» ✉", description="two\nlines"),
        await create_task(client, new_account, "Call Ada"),
    ]
    done = await client.patch(
        f"{new_account.tasks_url}/{created[2]['id']}/complete", headers=new_account.headers
    )
    assert done.status_code == 200, done.text
    started = datetime.now(UTC)

    response = await client.get(EXPORT_URL, headers=new_account.headers)

    assert response.status_code == 200, response.text
    document = response.json()
    assert set(document) == {"user", "lists", "tasks", "exported_at"}
    me = await client.get(ME_URL, headers=new_account.headers)
    assert document["user"] == me.json()
    # The lists, as the list routes answer them, with deleted_at.
    lists = await client.get(f"/api/{new_account.id}/lists", headers=new_account.headers)
    assert document["lists"] == [{**row, "deleted_at": None} for row in lists.json()]
    assert [row["name"] for row in document["lists"]] == ["Inbox"]
    rows = await stored_tasks(engine, new_account.id)
    assert len(document["tasks"]) == len(rows) == 3
    for task, row in zip(document["tasks"], rows, strict=True):
        assert_matches_row(task, row)
        # The same object the task routes answer with, and whether it is in the trash.
        single = await client.get(
            f"{new_account.tasks_url}/{task['id']}", headers=new_account.headers
        )
        assert task == {**single.json(), "deleted_at": None}
    assert [task["title"] for task in document["tasks"]] == [task["title"] for task in created]
    exported_at = parse_time(document["exported_at"])
    assert started <= exported_at <= datetime.now(UTC)


async def test_the_export_holds_the_trash_too(
    client: httpx.AsyncClient, new_account: Account, engine: AsyncEngine
) -> None:
    kept = await create_task(client, new_account, "kept")
    trashed = await create_task(client, new_account, "trashed")
    deleted = await client.delete(
        f"{new_account.tasks_url}/{trashed['id']}", headers=new_account.headers
    )
    assert deleted.status_code == 204

    document = (await client.get(EXPORT_URL, headers=new_account.headers)).json()

    assert [task["id"] for task in document["tasks"]] == [kept["id"], trashed["id"]]
    assert document["tasks"][0]["deleted_at"] is None
    for task, row in zip(
        document["tasks"], await stored_tasks(engine, new_account.id), strict=True
    ):
        assert_matches_row(task, row)
    assert document["tasks"][1]["deleted_at"] is not None


async def test_it_is_an_attachment_of_json(client: httpx.AsyncClient, new_account: Account) -> None:
    response = await client.get(EXPORT_URL, headers=new_account.headers)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-disposition"] == 'attachment; filename="tasks-export.json"'
    assert response.headers["cache-control"] == "no-store"


async def test_another_users_tasks_are_never_included(
    client: httpx.AsyncClient, sign_up: SignUp, engine: AsyncEngine
) -> None:
    mine, theirs = await sign_up(), await sign_up()
    await create_task(client, mine, "mine")
    for title in ("theirs", "theirs too"):
        await create_task(client, theirs, title)
    await insert_tasks(engine, theirs.id, 600)  # more than a batch of someone else's

    response = await client.get(EXPORT_URL, headers=mine.headers)

    assert response.status_code == 200, response.text
    document = response.json()
    assert document["user"]["id"] == mine.id
    assert [task["title"] for task in document["tasks"]] == ["mine"]
    assert {task["user_id"] for task in document["tasks"]} == {mine.id}


async def test_an_account_without_tasks_exports_an_empty_list(
    client: httpx.AsyncClient, new_account: Account
) -> None:
    response = await client.get(EXPORT_URL, headers=new_account.headers)

    assert response.status_code == 200, response.text
    assert response.json()["tasks"] == []


async def test_every_task_of_several_batches_comes_once_in_order(
    client: httpx.AsyncClient, new_account: Account, engine: AsyncEngine
) -> None:
    count = BATCH_SIZE * 2 + 7
    await insert_tasks(engine, new_account.id, count)

    response = await client.get(EXPORT_URL, headers=new_account.headers)

    assert response.status_code == 200, response.text
    tasks = response.json()["tasks"]
    rows = await stored_tasks(engine, new_account.id)
    assert len(tasks) == len(rows) == count
    for task, row in zip(tasks, rows, strict=True):
        assert_matches_row(task, row)


async def test_without_a_token_it_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get(EXPORT_URL)

    assert response.status_code == 401, response.text
    assert response.json() == {"detail": "Not authenticated", "code": "not_authenticated"}


async def test_a_deleted_users_token_is_401_before_anything_is_sent(
    client: httpx.AsyncClient, new_account: Account, engine: AsyncEngine
) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            text("DELETE FROM users WHERE id = :id"), {"id": uuid.UUID(new_account.id)}
        )

    response = await client.get(EXPORT_URL, headers=new_account.headers)

    assert response.status_code == 401, response.text
    assert response.json()["code"] == "invalid_token"
    assert "content-disposition" not in response.headers


# --- streaming, driven at the ASGI level (httpx's in-process transport buffers the body) ---


@dataclass
class Download:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    chunks: int = 0
    size: int = 0
    # The app's lifespan state, as the request saw it (its Database among it).
    state: dict[str, Any] = field(default_factory=dict)


async def download(app: FastAPI, token: str, sink: Callable[[bytes], Awaitable[None]]) -> Download:
    """GET the export as uvicorn would serve it (ASGI spec 2.4: a failing send is the client
    gone), handing each chunk of the body to ``sink`` as it is sent."""
    result = Download()
    finished = asyncio.Event()
    request_read = False

    async def receive() -> dict[str, Any]:
        nonlocal request_read
        if not request_read:
            request_read = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            result.status = message["status"]
            result.headers = {k.decode(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            body = message.get("body", b"")
            if body:
                result.chunks += 1
                result.size += len(body)
                await sink(body)
            if not message.get("more_body", False):
                finished.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": EXPORT_URL,
        "raw_path": EXPORT_URL.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)  # type: ignore[arg-type]
    finished.set()
    result.state = scope.get("state", {})
    return result


@pytest.fixture
def export_file() -> Iterator[Path]:
    """Where a large export is written as it arrives: on disk, so the test's own copy of the
    document is not counted against the app's memory."""
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder) / "tasks-export.json"


async def test_the_document_is_one_snapshot_even_while_the_account_changes(
    app: FastAPI, client: httpx.AsyncClient, new_account: Account, engine: AsyncEngine
) -> None:
    await insert_tasks(engine, new_account.id, BATCH_SIZE + 10)
    before = await stored_tasks(engine, new_account.id)
    first_chunk_sent, changes_made = asyncio.Event(), asyncio.Event()
    body = bytearray()

    async def sink(chunk: bytes) -> None:
        body.extend(chunk)
        if not first_chunk_sent.is_set():
            first_chunk_sent.set()
            await changes_made.wait()

    export = asyncio.create_task(download(app, new_account.token, sink))
    await first_chunk_sent.wait()
    # Committed after the export's snapshot and before any task was read from it.
    added = await create_task(client, new_account, "added during the export")
    async with engine.begin() as connection:
        await connection.execute(text("DELETE FROM tasks WHERE id = :id"), {"id": before[0]["id"]})
        await connection.execute(
            text("UPDATE tasks SET title = 'renamed' WHERE id = :id"), {"id": before[-1]["id"]}
        )
    changes_made.set()
    result = await export

    assert result.status == 200
    tasks = orjson.loads(body)["tasks"]
    assert len(tasks) == len(before)
    for task, row in zip(tasks, before, strict=True):
        assert_matches_row(task, row)
    assert added["id"] not in {task["id"] for task in tasks}
    assert len(await stored_tasks(engine, new_account.id)) == len(before)  # -1 +1


async def test_a_client_gone_mid_export_gives_its_connection_back(
    app: FastAPI, settings: Settings, new_account: Account, engine: AsyncEngine
) -> None:
    await insert_tasks(engine, new_account.id, BATCH_SIZE * 4)
    sent: list[bytes] = []

    async def sink(chunk: bytes) -> None:
        sent.append(chunk)
        if len(sent) == 2:
            raise OSError("connection reset by peer")  # what uvicorn's send raises then

    result = await download(app, new_account.token, sink)

    # Checked before anything else runs on the loop: given back when the response ended, not
    # later by the collector's finaliser of the abandoned generator.
    database: Database = result.state["database"]
    free_slots = database.admission._value  # asyncio.Semaphore has no public count
    assert free_slots == settings.db_pool_size + settings.db_max_overflow
    assert result.status == 200
    assert len(sent) == 2
    async with engine.connect() as connection:
        open_transactions = await connection.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"
            )
        )
    assert open_transactions == 0


async def test_exports_beyond_the_per_process_cap_are_429_until_one_ends(
    app: FastAPI, client: httpx.AsyncClient, new_account: Account, engine: AsyncEngine
) -> None:
    """EXPORT_MAX_CONCURRENT (2 here): each export holds a pooled connection while its reader
    reads, so a third is refused rather than queued, and the slots come back afterwards."""
    await insert_tasks(engine, new_account.id, 10)
    release = asyncio.Event()

    async def slow_reader(chunk: bytes) -> None:
        await release.wait()

    running = [asyncio.create_task(download(app, new_account.token, slow_reader)) for _ in "ab"]
    await asyncio.sleep(0.2)  # both have sent their first chunk and wait for their reader

    refused = await client.get(EXPORT_URL, headers=new_account.headers)

    assert refused.status_code == 429, refused.text
    assert refused.json() == {
        "detail": "Too many exports are running; try again shortly",
        "code": "rate_limited",
    }
    assert refused.headers["Retry-After"] == "5"
    release.set()
    assert [result.status for result in await asyncio.gather(*running)] == [200, 200]
    # A client gone mid-download gives its slot back too.
    for _ in range(3):

        async def gone(chunk: bytes) -> None:
            raise OSError("connection reset by peer")

        await download(app, new_account.token, gone)
    again = await client.get(EXPORT_URL, headers=new_account.headers)
    assert again.status_code == 200, again.text


@pytest.mark.slow
async def test_a_large_export_is_streamed_in_small_pieces(
    app: FastAPI, new_account: Account, engine: AsyncEngine, export_file: Path
) -> None:
    """100,000 tasks: the app's peak of Python memory while it sends them stays a small
    fraction of the document, which arrives in many chunks before its end."""
    await insert_tasks(engine, new_account.id, LARGE)
    # One small export first, so what is allocated once (statement caches, codecs) is not
    # counted against the streaming.
    await download(app, new_account.token, _discard)

    with export_file.open("wb") as out:

        async def write(chunk: bytes) -> None:
            out.write(chunk)

        tracemalloc.start()
        try:
            baseline, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            started = time.perf_counter()
            result = await download(app, new_account.token, write)
            elapsed = time.perf_counter() - started
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()

    growth = peak - baseline
    print(
        f"export of {LARGE} tasks: {result.size / 1e6:.1f} MB in {result.chunks} chunks, "
        f"{elapsed:.1f} s under tracemalloc; peak Python memory growth {growth / 1e6:.2f} MB"
    )
    assert result.status == 200
    assert result.chunks >= LARGE // BATCH_SIZE
    assert growth < result.size / 10
    document = orjson.loads(await asyncio.to_thread(export_file.read_bytes))
    tasks = document["tasks"]
    assert len(tasks) == LARGE
    assert len({task["id"] for task in tasks}) == LARGE
    # Created a second apart, "task 100000" first.
    assert tasks[0]["title"] == f"task {LARGE}"
    assert tasks[-1]["title"] == "task 1"
    assert {task["user_id"] for task in tasks} == {new_account.id}


async def _discard(_: bytes) -> None:
    return None


@pytest.mark.slow
async def test_a_large_export_arrives_in_pieces_from_a_real_server(
    database_url: str, tmp_path: Path, engine: AsyncEngine
) -> None:
    """Over TCP from ``python -m app serve`` (one process): httpx reads the document while it
    is written, and the server's peak resident memory barely moves."""
    with AppServer(database_url, tmp_path, env={"WEB_CONCURRENCY": "1"}).serving() as server:
        assert server.process is not None
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            email = f"exporter-{uuid.uuid4().hex[:8]}@example.com"
            signup = await http.post(
                "/api/auth/signup", json={"email": email, "password": "correct horse battery"}
            )
            assert signup.status_code == 201, signup.text
            user_id, token = signup.json()["id"], signup.json()["access_token"]
            # An export of no tasks first, so what is allocated once (statement caches,
            # codecs) is in the peak before.
            warm_up = await http.get(EXPORT_URL, headers=bearer(token))
            assert warm_up.status_code == 200
            await insert_tasks(engine, user_id, LARGE)
            # The peak so far is argon2's (signup hashed a password with 64 MiB): start afresh.
            rss_before = _reset_peak_rss(server.process.pid)

            chunks, body = 0, bytearray()
            started = time.perf_counter()
            async with http.stream("GET", EXPORT_URL, headers=bearer(token)) as response:
                assert response.status_code == 200
                first_chunk_after = None
                async for chunk in response.aiter_raw():
                    if first_chunk_after is None:
                        first_chunk_after = time.perf_counter() - started
                    chunks += 1
                    body.extend(chunk)
            total = time.perf_counter() - started
            peak_after = _peak_rss(server.process.pid)

    growth = peak_after - rss_before
    print(
        f"real server: {len(body) / 1e6:.1f} MB in {chunks} reads, first after "
        f"{first_chunk_after:.3f} s of {total:.2f} s; RSS {rss_before / 1e6:.1f} MB, peak while "
        f"sending {peak_after / 1e6:.1f} MB"
    )
    assert chunks >= 50
    assert first_chunk_after is not None
    assert first_chunk_after < total / 5
    assert growth < len(body) / 4
    document = orjson.loads(body)
    assert len(document["tasks"]) == LARGE
    assert document["user"]["id"] == user_id


def _peak_rss(pid: int) -> int:
    """The process's peak resident set size since it started or was reset, in bytes."""
    return _status_kib(pid, "VmHWM") * 1024


def _reset_peak_rss(pid: int) -> int:
    """Make the peak the current resident set size (Linux: 5 > clear_refs); that size."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return _status_kib(pid, "VmRSS") * 1024


def _status_kib(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {name} in /proc/{pid}/status")


@pytest.mark.slow
async def test_behind_a_transaction_pooling_pgbouncer_it_works_the_same(
    pg_cluster: PostgresCluster, pgbouncer: PgBouncer, start_server: StartServer
) -> None:
    """There the app's transaction opens with the timeouts set locally: the snapshot's
    isolation must be on its BEGIN, before them (db/database.py)."""
    database_url = await create_database(pg_cluster.url())
    server = start_server(
        via(pgbouncer, database_url),
        # LISTEN needs PostgreSQL directly, not the pooler.
        {"DB_PGBOUNCER": "true", "WEB_CONCURRENCY": "1", "DATABASE_LISTEN_URL": database_url},
    )
    count = BATCH_SIZE * 2 + 1
    async with http_client(server) as http:
        account = await sign_up_over_http(http)
        await fetch(
            database_url,
            "INSERT INTO tasks (user_id, title, created_at)"
            " SELECT $1, 'task ' || n, now() - make_interval(secs => n)"
            " FROM generate_series(1, $2::int) AS n",
            uuid.UUID(account.id),
            count,
        )
        response = await http.get(EXPORT_URL, headers=account.headers)

    assert response.status_code == 200, response.text
    tasks = response.json()["tasks"]
    assert [task["title"] for task in tasks] == [f"task {n}" for n in range(count, 0, -1)]
    assert PREPARED_STATEMENT_ERROR.findall(server.log_text()) == []
