"""Failover to a promoted standby under a real server process whose DATABASE_URL lists both
hosts with ``target_session_attrs=read-write``: the service finds the new primary by itself.

A primary replicates synchronously to a hot standby (``pg_basebackup -R``); eight clients create
tasks, each retrying its own Idempotency-Key until it is acknowledged; mid-load the primary is
killed and the standby promoted. The test compares what the clients were told with what the
promoted standby holds, and times how soon writes and the readiness probe come back.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import orjson
import pytest

from tests.fixtures.accounts import Account
from tests.fixtures.cluster import create_database, fetch, http_client, sign_up_over_http
from tests.fixtures.processes import (
    REPLICATION_HBA,
    AppServer,
    PostgresCluster,
    bundled_postgres_bin,
    running_cluster,
    running_standby,
)
from tests.fixtures.tcp_proxy import TcpProxy, running_proxy

# Real processes for tens of seconds: scheduled first (see conftest.py); the test, clusters and
# server start included, stays well under a minute.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

STANDBY_NAME = "failover_standby"
# Every commit the primary acknowledges has first been flushed by the standby. The promoted
# standby must not wait for a standby of its own, which it does not have.
PRIMARY_SETTINGS = {
    "synchronous_standby_names": f"'{STANDBY_NAME}'",
    "synchronous_commit": "on",
}
STANDBY_SETTINGS = {"synchronous_standby_names": "''"}
PRIMARY_HBA = ("host all all 127.0.0.1/32 trust", REPLICATION_HBA)
# Enough connections for every writer and the probes, so that the only 503s are the failover's.
SERVICE_ENV = {
    "DB_POOL_SIZE": "10",
    "DB_MAX_OVERFLOW": "10",
    "DB_POOL_TIMEOUT_SECONDS": "5",
    "DB_CONNECT_TIMEOUT_SECONDS": "1",
}
LISTENER_APPLICATION_NAME = "taskapi-listener"

WRITERS = 8
LOAD_BEFORE_FAILOVER_SECONDS = 2.0
# The replication link goes silent this long before the kill: writes acknowledged meanwhile would
# exist only on the primary were replication asynchronous, so such a loss cannot hide in luck.
LINK_SILENT_SECONDS = 0.5
DOWN_SECONDS = 1.0  # from the kill to the promotion: neither host takes writes
LOAD_AFTER_RECOVERY_SECONDS = 1.5
RECOVERY_CONTRACT_SECONDS = 10.0  # writes and readiness are back this soon after the promotion
# Retry-After (5 s) is honoured up to this, so the clients notice the recovery when it happens.
RETRY_AFTER_CAP_SECONDS = 0.2
TRANSPORT_BACKOFF_SECONDS = 0.05
POLL_SECONDS = 0.1
STANDBY_STREAMING_TIMEOUT_SECONDS = 15.0
RUN_DEADLINE_SECONDS = 25.0
# Writers stop retrying this long before the run's deadline, so an unanswered write is reported
# as one rather than as the run timing out.
GIVE_UP_MARGIN_SECONDS = 3.0


@dataclass(frozen=True)
class FailoverService:
    primary: PostgresCluster
    standby: PostgresCluster
    # The standby streams the primary's WAL through this proxy, so the test can silence it.
    replication_link: TcpProxy
    database: str
    server: AppServer


async def wait_for_synchronous_standby(primary: PostgresCluster) -> None:
    deadline = time.monotonic() + STANDBY_STREAMING_TIMEOUT_SECONDS
    while True:
        rows = await fetch(
            primary.url(),
            "SELECT sync_state FROM pg_stat_replication WHERE application_name = $1",
            STANDBY_NAME,
        )
        if [row["sync_state"] for row in rows] == ["sync"]:
            return
        assert time.monotonic() < deadline, f"the standby is not a synchronous one: {rows}"
        await asyncio.sleep(POLL_SECONDS)


@pytest.fixture
async def failover_service() -> AsyncIterator[FailoverService]:
    """A synchronously replicated primary and standby, and ``python -m app serve`` on a
    DATABASE_URL that lists both; everything stopped and removed afterwards."""
    async with contextlib.AsyncExitStack() as stack:
        primary = stack.enter_context(
            running_cluster(bundled_postgres_bin(), settings=PRIMARY_SETTINGS, hba=PRIMARY_HBA)
        )
        link = await stack.enter_async_context(running_proxy(primary.url()))
        # In a thread, as is everything that waits on a process: the proxy runs on this loop.
        standby = await asyncio.to_thread(
            stack.enter_context,
            running_standby(
                primary, STANDBY_NAME, upstream_port=link.port, settings=STANDBY_SETTINGS
            ),
        )
        await wait_for_synchronous_standby(primary)
        database = (await create_database(primary.url())).rsplit("/", 1)[1]
        database_url = (
            f"postgresql://postgres@127.0.0.1:{primary.port},127.0.0.1:{standby.port}"
            f"/{database}?target_session_attrs=read-write"
        )
        server = AppServer(database_url=database_url, root=primary.root, env=SERVICE_ENV)
        stack.push_async_callback(asyncio.to_thread, server.stop)
        await asyncio.to_thread(server.start)
        yield FailoverService(primary, standby, link, database, server)


@dataclass(frozen=True)
class Acknowledged:
    task_id: str
    sent_at: float  # when the attempt answered 201 was sent
    received_at: float


@dataclass
class Load:
    titles: dict[str, str] = field(default_factory=dict)  # key -> title, before its first attempt
    acknowledged: dict[str, Acknowledged] = field(default_factory=dict)
    # (status, code, Retry-After) of every answer that was not a 201
    refusals: collections.Counter[tuple[int, str, str | None]] = field(
        default_factory=collections.Counter
    )
    transport_errors: collections.Counter[str] = field(default_factory=collections.Counter)
    unanswered: list[str] = field(default_factory=list)  # keys given up on
    replayed: int = 0  # 201s replayed from the key's first request, which had committed

    def acknowledged_between(self, start: float, end: float) -> int:
        return sum(start <= ack.received_at < end for ack in self.acknowledged.values())


@dataclass
class Timeline:
    silenced_at: float = 0.0
    killed_at: float = 0.0  # the primary's processes are gone
    promoted_at: float = 0.0  # the promotion was asked for
    promotion_took: float = 0.0
    readiness_while_down: httpx.Response | None = None
    ready_at: float | None = None  # /health/db answered 200 again
    listening_at: float | None = None  # the LISTEN session is on the new primary
    writes_back_at: float | None = None  # first 201 to a request sent after the kill


def _json_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("{")]


def _code(response: httpx.Response) -> str:
    try:
        return str(response.json().get("code"))
    except ValueError:
        return response.text[:80]


async def create_until_acknowledged(
    http: httpx.AsyncClient, account: Account, key: str, load: Load, give_up_at: float
) -> None:
    """The client's rule: the same request, key included, again after any failure, until a 201
    (or ``give_up_at``)."""
    headers = {**account.headers, "Idempotency-Key": key}
    body = {"title": load.titles[key]}
    while time.monotonic() < give_up_at:
        sent_at = time.monotonic()
        try:
            response = await http.post(account.tasks_url, json=body, headers=headers)
        except httpx.TransportError as error:
            load.transport_errors[type(error).__name__] += 1
            await asyncio.sleep(TRANSPORT_BACKOFF_SECONDS)
            continue
        if response.status_code == 201:
            load.acknowledged[key] = Acknowledged(response.json()["id"], sent_at, time.monotonic())
            load.replayed += response.headers.get("Idempotent-Replayed") == "true"
            return
        retry_after = response.headers.get("Retry-After")
        load.refusals[(response.status_code, _code(response), retry_after)] += 1
        wait = float(retry_after) if retry_after and retry_after.isdigit() else 1.0
        await asyncio.sleep(min(wait, RETRY_AFTER_CAP_SECONDS))
    load.unanswered.append(key)


async def create_writer(
    http: httpx.AsyncClient,
    account: Account,
    load: Load,
    stop: asyncio.Event,
    give_up_at: float,
    n: int,
) -> None:
    while not stop.is_set() and time.monotonic() < give_up_at:
        key = str(uuid.uuid4())
        load.titles[key] = f"failover-w{n}:{key}"
        await create_until_acknowledged(http, account, key, load, give_up_at)


async def first_time(condition: Callable[[], Awaitable[bool]], deadline: float) -> float | None:
    """When ``condition`` first held, polled until ``deadline``; None if it never did."""
    while time.monotonic() < deadline:
        if await condition():
            return time.monotonic()
        await asyncio.sleep(POLL_SECONDS)
    return None


async def fail_over(
    service: FailoverService,
    http: httpx.AsyncClient,
    load: Load,
    timeline: Timeline,
    stop: asyncio.Event,
) -> None:
    """Silence replication, kill the primary, promote the standby; then wait (bounded) for
    readiness, the listener and writes to come back, and let the load run a little more."""

    async def ready() -> bool:
        return (await http.get("/health/db")).status_code == 200

    async def listening(log_offset: int) -> bool:
        # The session the service says it listens on (its log) is one of the new primary's.
        connected = {
            record["server_pid"]
            for record in map(orjson.loads, _json_lines(service.server.log_text()[log_offset:]))
            if record.get("event") == "notification_listener_connected"
        }
        rows = await fetch(
            service.standby.url(service.database),
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1",
            LISTENER_APPLICATION_NAME,
        )
        return bool(connected & {row["pid"] for row in rows})

    async def writes_back() -> bool:
        return any(ack.sent_at >= timeline.killed_at for ack in load.acknowledged.values())

    try:
        await asyncio.sleep(LOAD_BEFORE_FAILOVER_SECONDS)
        service.replication_link.black_hole()
        timeline.silenced_at = time.monotonic()
        await asyncio.sleep(LINK_SILENT_SECONDS)
        await asyncio.to_thread(service.primary.stop, "immediate")
        timeline.killed_at = time.monotonic()
        log_offset = len(service.server.log_text())
        await service.replication_link.refuse()
        await asyncio.sleep(DOWN_SECONDS)
        timeline.readiness_while_down = await http.get("/health/db")

        timeline.promoted_at = time.monotonic()
        await asyncio.to_thread(service.standby.promote)
        timeline.promotion_took = time.monotonic() - timeline.promoted_at
        contract_ends = timeline.promoted_at + RECOVERY_CONTRACT_SECONDS
        timeline.ready_at = await first_time(ready, contract_ends)
        timeline.listening_at = await first_time(lambda: listening(log_offset), contract_ends)
        if await first_time(writes_back, contract_ends) is not None:
            timeline.writes_back_at = min(
                ack.received_at
                for ack in load.acknowledged.values()
                if ack.sent_at >= timeline.killed_at
            )
            await asyncio.sleep(LOAD_AFTER_RECOVERY_SECONDS)
    finally:
        stop.set()


async def test_writes_follow_a_promoted_standby_and_no_acknowledged_write_is_lost(
    failover_service: FailoverService,
) -> None:
    service = failover_service
    async with http_client(service.server) as http:
        account = await sign_up_over_http(http)
        log_offset = len(service.server.log_text())
        load, timeline, stop = Load(), Timeline(), asyncio.Event()
        started = time.monotonic()
        give_up_at = started + RUN_DEADLINE_SECONDS - GIVE_UP_MARGIN_SECONDS
        async with asyncio.timeout(RUN_DEADLINE_SECONDS), asyncio.TaskGroup() as group:
            group.create_task(fail_over(service, http, load, timeline, stop))
            for n in range(WRITERS):
                group.create_task(create_writer(http, account, load, stop, give_up_at, n))
        elapsed = time.monotonic() - started

    rows = await fetch(
        service.standby.url(service.database),
        "SELECT id, title FROM tasks WHERE user_id = $1",
        uuid.UUID(account.id),
    )
    stored = collections.Counter((str(row["id"]), row["title"]) for row in rows)
    acknowledged = {(ack.task_id, load.titles[key]): key for key, ack in load.acknowledged.items()}
    lost = sorted(load.titles[key] for pair, key in acknowledged.items() if pair not in stored)
    duplicated = {pair: count for pair, count in stored.items() if count > 1}
    unacknowledged = sorted(title for _, title in set(stored) - set(acknowledged))
    refused = sum(load.refusals.values())
    before_failover = load.acknowledged_between(started, timeline.silenced_at)
    while_silent = load.acknowledged_between(timeline.silenced_at, timeline.killed_at)
    after_promotion = load.acknowledged_between(timeline.promoted_at, time.monotonic())

    def since_promotion(moment: float | None) -> str:
        return "never" if moment is None else f"{moment - timeline.promoted_at:.2f}s"

    print(
        f"\nfailover in {elapsed:.1f}s: sent={len(load.titles)} acked={len(load.acknowledged)} "
        f"(before the failover {before_failover}, while the link was silent {while_silent}, "
        f"after the promotion {after_promotion}, replayed {load.replayed}) "
        f"rows={len(rows)} lost={len(lost)} duplicated={len(duplicated)} "
        f"unacknowledged={len(unacknowledged)} unanswered={len(load.unanswered)} "
        f"refusals={refused} {sorted(load.refusals.items())} "
        f"transport_errors={sorted(load.transport_errors.items())} "
        f"down={timeline.promoted_at - timeline.killed_at:.2f}s "
        f"promotion_took={timeline.promotion_took:.2f}s "
        f"writes_back={since_promotion(timeline.writes_back_at)} "
        f"ready={since_promotion(timeline.ready_at)} "
        f"listening={since_promotion(timeline.listening_at)}"
    )
    # Every acknowledged create is on the promoted standby, once, under the id it was given.
    assert lost == []
    assert duplicated == {}
    # The service found the new primary by itself, within the contract.
    assert timeline.writes_back_at is not None, "no write was served after the promotion"
    assert timeline.writes_back_at - timeline.promoted_at < RECOVERY_CONTRACT_SECONDS
    assert timeline.ready_at is not None, "/health/db did not answer 200 after the promotion"
    assert timeline.listening_at is not None, "the LISTEN session is not on the new primary"
    # Every create was eventually acknowledged, so every row is one the clients were told of.
    assert load.unanswered == []
    assert unacknowledged == []
    # The outage was an outage to the clients: 503 with Retry-After, never a 500 or a hang-up.
    assert {
        (status, (retry_after or "").isdigit()) for status, _, retry_after in load.refusals
    } == {(503, True)}
    assert load.transport_errors == {}
    down = timeline.readiness_while_down
    assert down is not None
    assert down.status_code == 503, down.text
    assert down.headers["Retry-After"].isdigit()
    new_log = service.server.log_text()[log_offset:]
    assert '"status":500' not in new_log
    assert "unhandled_error" not in new_log
    # The run proved something: writes were acknowledged on both sides of the failover.
    assert before_failover > 0, "no write was acknowledged before the failover"
    assert after_promotion > 0, "no write was acknowledged after the promotion"
