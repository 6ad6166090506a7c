"""Exactly-once writes through database crashes: clients that retry every write with the same
Idempotency-Key, as the contract tells them to, while PostgreSQL is killed and restarted under a
real server process.

Each test compares what the clients were told with what the database holds: every acknowledged
create is one task and one key row, every acknowledged toggle one version of its task.
"""

from __future__ import annotations

import asyncio
import collections
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest

from tests.fixtures.accounts import Account
from tests.fixtures.cluster import (
    StartServer,
    create_database,
    fetch,
    http_client,
    install_slow_trigger,
    sign_up_over_http,
)
from tests.fixtures.processes import AppServer, PostgresCluster, ShutdownMode

# Tens of seconds of real processes: scheduled first (see conftest.py); each test, server start
# included, stays well under a minute.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

# Enough connections for every writer and the first attempts they left running, so that the
# only 503s are the database's.
SERVICE_ENV = {
    "DB_POOL_SIZE": "10",
    "DB_MAX_OVERFLOW": "10",
    "DB_POOL_TIMEOUT_SECONDS": "5",
    "DB_CONNECT_TIMEOUT_SECONDS": "1",
}

WRITERS = 8
# Three kills during the load: two crashes (no checkpoint, WAL replay) and a fast shutdown.
KILL_MODES: tuple[ShutdownMode, ...] = ("immediate", "fast", "immediate")
LOAD_BEFORE_EACH_KILL_SECONDS = 2.5
DOWN_SECONDS = 0.5
LOAD_AFTER_LAST_RESTART_SECONDS = 2.0
# A write's first attempt gives up this soon. A slow write (SLOW_SECONDS) always outlives it
# and commits after its client left, so that write's retry must meet its first attempt either
# still running (409 in use) or done (a replay): without the key it would be written twice.
FIRST_ATTEMPT_TIMEOUT_SECONDS = 0.2
RETRY_TIMEOUT_SECONDS = 5.0
SLOW_SECONDS = 0.4
SLOW_CREATE_EVERY = 4  # every fourth create of a writer is slow
# Retry-After is honoured up to this: the 503's five seconds would leave no load to kill under.
RETRY_AFTER_CAP_SECONDS = 0.5
TRANSPORT_BACKOFF_SECONDS = 0.05
ONE_WRITE_DEADLINE_SECONDS = 20.0
RUN_DEADLINE_SECONDS = 40.0
REPLAY_BATCH = 25
TOGGLED_TASKS = 4  # the first half slow


@dataclass(frozen=True)
class Service:
    server: AppServer
    database_url: str


@pytest.fixture(scope="module")
async def service(pg_cluster: PostgresCluster, start_server: StartServer) -> Service:
    database_url = await create_database(pg_cluster.url())
    server = start_server(database_url, SERVICE_ENV)
    await install_slow_trigger(database_url)
    return Service(server=server, database_url=database_url)


@pytest.fixture
async def http(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(service.server) as client:
        yield client


@dataclass
class Retries:
    """What the writes' attempts met, to show that the faults reached them."""

    answers: collections.Counter[int] = field(default_factory=collections.Counter)
    transport_errors: collections.Counter[str] = field(default_factory=collections.Counter)
    in_use: int = 0
    replayed: int = 0  # final answers marked Idempotent-Replayed

    def summary(self) -> str:
        return (
            f"answers={sorted(self.answers.items())} "
            f"transport_errors={sorted(self.transport_errors.items())} "
            f"in_use={self.in_use} replayed={self.replayed}"
        )


def _in_use(response: httpx.Response) -> bool:
    return response.status_code == 409 and response.json().get("code") == "idempotency_key_in_use"


async def send_until_answered(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: dict[str, Any] | None,
    retries: Retries,
) -> httpx.Response:
    """The client's retry rule: the same request, key included, again on a 5xx, a connection
    error or timeout, and a 409 idempotency_key_in_use, until an answer that is none of them
    (bounded: a write that gets none in ONE_WRITE_DEADLINE_SECONDS fails the test)."""
    deadline = time.monotonic() + ONE_WRITE_DEADLINE_SECONDS
    timeout = FIRST_ATTEMPT_TIMEOUT_SECONDS
    seen: list[int | str] = []
    while time.monotonic() < deadline:
        try:
            response = await http.request(method, url, headers=headers, json=body, timeout=timeout)
        except httpx.TransportError as error:
            retries.transport_errors[type(error).__name__] += 1
            seen.append(type(error).__name__)
            await asyncio.sleep(TRANSPORT_BACKOFF_SECONDS)
        else:
            retries.answers[response.status_code] += 1
            seen.append(response.status_code)
            if response.status_code < 500 and not _in_use(response):
                if response.headers.get("Idempotent-Replayed") == "true":
                    retries.replayed += 1
                return response
            retries.in_use += _in_use(response)
            retry_after = response.headers.get("Retry-After")
            assert retry_after is not None, (response.status_code, response.text)
            await asyncio.sleep(min(float(retry_after), RETRY_AFTER_CAP_SECONDS))
        timeout = RETRY_TIMEOUT_SECONDS
    raise AssertionError(f"{method} {url} {dict(headers)} got no answer: {seen}")


async def kill_and_restart_database(cluster: PostgresCluster, stop: asyncio.Event) -> None:
    try:
        for mode in KILL_MODES:
            await asyncio.sleep(LOAD_BEFORE_EACH_KILL_SECONDS)
            await asyncio.to_thread(cluster.stop, mode)
            await asyncio.sleep(DOWN_SECONDS)
            await asyncio.to_thread(cluster.start)
        await asyncio.sleep(LOAD_AFTER_LAST_RESTART_SECONDS)
    finally:
        stop.set()


async def run_through_database_kills(
    cluster: PostgresCluster, stop: asyncio.Event, writers: list[Coroutine[Any, Any, None]]
) -> float:
    """Run ``writers`` (which end their current write once ``stop`` is set) while the database
    is killed and restarted; the seconds it took."""
    started = time.monotonic()
    async with asyncio.timeout(RUN_DEADLINE_SECONDS), asyncio.TaskGroup() as group:
        group.create_task(kill_and_restart_database(cluster, stop))
        for writer in writers:
            group.create_task(writer)
    return time.monotonic() - started


def assert_no_server_error_logged(server: AppServer, log_offset: int) -> None:
    new_log = server.log_text()[log_offset:]
    assert '"status":500' not in new_log
    assert "unhandled_error" not in new_log


@dataclass
class Creates:
    titles: dict[str, str] = field(default_factory=dict)  # key -> title, before its first attempt
    answers: dict[str, httpx.Response] = field(default_factory=dict)  # key -> final answer


async def create_writer(
    http: httpx.AsyncClient,
    account: Account,
    stop: asyncio.Event,
    n: int,
    creates: Creates,
    retries: Retries,
) -> None:
    sequence = 0
    while not stop.is_set():
        sequence += 1
        key = str(uuid.uuid4())
        slow = sequence % SLOW_CREATE_EVERY == 0
        title = f"slow:{SLOW_SECONDS}:{key}" if slow else f"w{n}:{key}"
        creates.titles[key] = title
        headers = {**account.headers, "Idempotency-Key": key}
        creates.answers[key] = await send_until_answered(
            http, "POST", account.tasks_url, headers, {"title": title}, retries
        )


async def test_creates_retried_with_their_key_through_database_kills_happen_exactly_once(
    service: Service, http: httpx.AsyncClient, pg_cluster: PostgresCluster
) -> None:
    account = await sign_up_over_http(http)
    user_id = uuid.UUID(account.id)
    log_offset = len(service.server.log_text())
    creates, retries, stop = Creates(), Retries(), asyncio.Event()
    writers = [create_writer(http, account, stop, n, creates, retries) for n in range(WRITERS)]
    elapsed = await run_through_database_kills(pg_cluster, stop, writers)

    acked = {key: r for key, r in creates.answers.items() if r.status_code == 201}
    refused = {
        key: (r.status_code, r.text) for key, r in creates.answers.items() if key not in acked
    }
    rows = await fetch(
        service.database_url, "SELECT id, title, version FROM tasks WHERE user_id = $1", user_id
    )
    per_title = collections.Counter(row["title"] for row in rows)
    duplicated = {title: count for title, count in per_title.items() if count > 1}
    acked_titles = {creates.titles[key]: key for key in acked}
    lost = sorted(title for title in acked_titles if title not in per_title)
    unacknowledged = sorted(set(per_title) - set(acked_titles))
    print(
        f"\ncreates in {elapsed:.1f}s: sent={len(creates.titles)} acked={len(acked)} "
        f"rows={len(rows)} lost={len(lost)} duplicated={len(duplicated)} "
        f"unacknowledged={len(unacknowledged)} {retries.summary()}"
    )
    assert refused == {}
    assert duplicated == {}
    assert lost == []
    assert unacknowledged == []
    # Each acknowledgement names the row that holds its title, at version 1.
    assert {row["title"]: (str(row["id"]), row["version"]) for row in rows} == {
        creates.titles[key]: (response.json()["id"], 1) for key, response in acked.items()
    }
    wrong_answers = {
        key: (response.json(), dict(response.headers))
        for key, response in acked.items()
        if response.json()["title"] != creates.titles[key]
        or response.json()["version"] != 1
        or response.headers.get("ETag") != '"1"'
        or not response.headers.get("Location", "").endswith(
            f"{account.tasks_url}/{response.json()['id']}"
        )
    }
    assert wrong_answers == {}

    # One key row per acknowledged create, holding the task it answered; none for anything else.
    key_rows = await fetch(
        service.database_url,
        "SELECT key, status, body FROM idempotency_keys WHERE user_id = $1",
        user_id,
    )
    assert {row["key"]: (row["status"], orjson.loads(row["body"])["id"]) for row in key_rows} == {
        key: (201, response.json()["id"]) for key, response in acked.items()
    }

    # Sent again now, every acknowledged create is replayed as it was first answered.
    mismatched: dict[str, object] = {}
    keys = list(acked)
    for start in range(0, len(keys), REPLAY_BATCH):
        batch = keys[start : start + REPLAY_BATCH]
        again = await asyncio.gather(
            *(
                http.post(
                    account.tasks_url,
                    json={"title": creates.titles[key]},
                    headers={**account.headers, "Idempotency-Key": key},
                )
                for key in batch
            )
        )
        for key, replay in zip(batch, again, strict=True):
            first = acked[key]
            expected = (
                201,
                "true",
                first.content,
                first.headers["ETag"],
                first.headers["Location"],
            )
            actual = (
                replay.status_code,
                replay.headers.get("Idempotent-Replayed"),
                replay.content,
                replay.headers.get("ETag"),
                replay.headers.get("Location"),
            )
            if actual != expected:
                mismatched[key] = {"first": expected, "replay": actual}
    assert mismatched == {}
    assert len(
        await fetch(service.database_url, "SELECT 1 FROM tasks WHERE user_id = $1", user_id)
    ) == len(acked)

    # The run proved something: the kills reached writes, and retries met their first attempt.
    assert retries.answers[503] > 0, "the database kills never reached a write"
    assert {status for status in retries.answers if status >= 500} == {503}
    assert retries.in_use > 0, "no retry met its first attempt still running"
    assert retries.replayed > 0, "no retry was answered by a replay"
    assert_no_server_error_logged(service.server, log_offset)


@dataclass
class Toggles:
    # task id -> (key, body) of each toggle answered 200, fresh or replayed
    acknowledged: dict[str, list[tuple[str, dict[str, Any]]]]
    conflicts: int = 0  # 412s: not applied, retried with the current version and a new key
    refused: list[tuple[str, int, str]] = field(default_factory=list)
    wrong_etags: list[tuple[int, str | None, int]] = field(default_factory=list)


async def toggle_writer(
    http: httpx.AsyncClient,
    account: Account,
    stop: asyncio.Event,
    seen_versions: dict[str, int],
    n: int,
    toggles: Toggles,
    retries: Retries,
) -> None:
    """Toggles the tasks of ``seen_versions`` in turn (each writer from its own one), each time
    under If-Match with the version it last saw and a new key."""
    task_ids = list(seen_versions)
    turn = n
    while not stop.is_set():
        turn += 1
        task_id = task_ids[turn % len(task_ids)]
        key = str(uuid.uuid4())
        headers = {
            **account.headers,
            "Idempotency-Key": key,
            "If-Match": f'"{seen_versions[task_id]}"',
        }
        url = f"{account.tasks_url}/{task_id}/complete"
        response = await send_until_answered(http, "PATCH", url, headers, None, retries)
        body = response.json()
        if response.status_code == 200:
            toggles.acknowledged[task_id].append((key, body))
            version = body["version"]
        elif response.status_code == 412 and body.get("code") == "version_conflict":
            toggles.conflicts += 1
            version = body["current"]["version"]
        else:
            toggles.refused.append((key, response.status_code, response.text))
            continue
        if response.headers.get("ETag") != f'"{version}"':
            toggles.wrong_etags.append(
                (response.status_code, response.headers.get("ETag"), version)
            )
        seen_versions[task_id] = version


async def test_toggles_retried_with_their_key_through_database_kills_apply_exactly_once(
    service: Service, http: httpx.AsyncClient, pg_cluster: PostgresCluster
) -> None:
    account = await sign_up_over_http(http)
    user_id = uuid.UUID(account.id)
    initial: dict[str, dict[str, Any]] = {}
    for i in range(TOGGLED_TASKS):
        title = f"slow:{SLOW_SECONDS}:toggled-{i}" if i < TOGGLED_TASKS // 2 else f"toggled-{i}"
        created = await http.post(account.tasks_url, json={"title": title}, headers=account.headers)
        assert created.status_code == 201, created.text
        initial[created.json()["id"]] = created.json()
    assert {(task["completed"], task["version"]) for task in initial.values()} == {(False, 1)}
    log_offset = len(service.server.log_text())
    toggles = Toggles(acknowledged={task_id: [] for task_id in initial})
    retries, stop = Retries(), asyncio.Event()
    writers = [
        toggle_writer(http, account, stop, dict.fromkeys(initial, 1), n, toggles, retries)
        for n in range(WRITERS)
    ]
    elapsed = await run_through_database_kills(pg_cluster, stop, writers)

    counts = {task_id: len(acks) for task_id, acks in toggles.acknowledged.items()}
    print(
        f"\ntoggles in {elapsed:.1f}s: acked={sorted(counts.values())} "
        f"conflicts={toggles.conflicts} refused={len(toggles.refused)} {retries.summary()}"
    )
    assert toggles.refused == []
    assert toggles.wrong_etags == []
    rows = {
        str(row["id"]): row
        for row in await fetch(
            service.database_url,
            "SELECT id, completed, version FROM tasks WHERE user_id = $1",
            user_id,
        )
    }
    assert set(rows) == set(initial)
    wrong: dict[str, object] = {}
    for task_id, acks in toggles.acknowledged.items():
        count, was_completed = len(acks), initial[task_id]["completed"]
        # Each acknowledged toggle made a version of its own, and the state that goes with it.
        made = sorted((body["version"], body["completed"]) for _, body in acks)
        expected_made = [(v, was_completed ^ (v % 2 == 0)) for v in range(2, 2 + count)]
        final = await http.get(f"{account.tasks_url}/{task_id}", headers=account.headers)
        assert final.status_code == 200, final.text
        expected_state = (1 + count, was_completed ^ (count % 2 == 1), f'"{1 + count}"')
        actual_state = (
            final.json()["version"],
            final.json()["completed"],
            final.headers.get("ETag"),
        )
        stored = (rows[task_id]["version"], rows[task_id]["completed"])
        if made != expected_made or actual_state != expected_state or stored != expected_state[:2]:
            wrong[task_id] = {
                "acknowledged": count,
                "versions_made": made,
                "served": actual_state,
                "stored": stored,
            }
    assert wrong == {}

    # One key row per acknowledged toggle, holding the version it made; a 412 stores none.
    key_rows = await fetch(
        service.database_url,
        "SELECT key, status, body FROM idempotency_keys WHERE user_id = $1",
        user_id,
    )
    stored_keys = {}
    for row in key_rows:
        body = orjson.loads(row["body"])
        stored_keys[row["key"]] = (row["status"], body["id"], body["version"])
    assert stored_keys == {
        key: (200, task_id, body["version"])
        for task_id, acks in toggles.acknowledged.items()
        for key, body in acks
    }

    assert sum(counts.values()) >= 2 * TOGGLED_TASKS, "too few toggles to prove anything"
    assert toggles.conflicts > 0, "the writers never raced each other"
    assert retries.answers[503] > 0, "the database kills never reached a write"
    assert {status for status in retries.answers if status >= 500} == {503}
    assert retries.in_use > 0, "no retry met its first attempt still running"
    assert retries.replayed > 0, "no retry was answered by a replay"
    assert_no_server_error_logged(service.server, log_offset)
