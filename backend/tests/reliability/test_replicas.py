"""Replicas that act as one service: two server processes, each with two workers, on one
PostgreSQL behind a transaction-pooling PgBouncer, sharing one Redis for the auth limits.

No state that matters lives in an API process: the login limits are counted in Redis, an ended
session and a change reach every process through PostgreSQL's notifications (on a direct LISTEN
connection, which PgBouncer cannot carry), and a write acknowledged by a process that is then
killed is in the database. Every request names its client with X-Forwarded-For (trusted from
127.0.0.1), so counts in a Redis shared with other tests and runs never meet.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from httpx_sse import aconnect_sse
from sqlalchemy.engine import make_url

from tests.fixtures.accounts import LOGIN_URL, sign_up_via
from tests.fixtures.cluster import StartServer, create_database, fetch, via
from tests.fixtures.processes import AppServer, PgBouncer, PostgresCluster
from tests.fixtures.redis import unique_address

# Tens of seconds of real processes: scheduled first (see conftest.py).
pytestmark = pytest.mark.slow

LOGIN_LIMIT = 3
# What the contracts promise: an ended session is refused, and a change is streamed, by every
# process within a second.
PROPAGATION_SECONDS = 1.0
WRITERS = 8
WRITES_PER_WRITER = 30
LOAD_DEADLINE_SECONDS = 60


def replica_env(database_url: str, bouncer: PgBouncer, redis_url: str) -> dict[str, str]:
    listen_url = make_url(database_url).update_query_dict({"application_name": "taskapi-listener"})
    return {
        "DATABASE_URL": via(bouncer, database_url),
        "DB_PGBOUNCER": "true",
        "DATABASE_LISTEN_URL": listen_url.render_as_string(hide_password=False),
        "WEB_CONCURRENCY": "2",
        "DB_POOL_SIZE": "5",
        "RATE_LIMIT_STORAGE_URL": redis_url,
        "RATE_LIMIT_AUTH_PER_ADDRESS": "1000/minute",
        "RATE_LIMIT_LOGIN_FAILURES_PER_ACCOUNT_AND_ADDRESS": f"{LOGIN_LIMIT}/minute",
    }


def _new_database(cluster: PostgresCluster) -> str:
    # A module fixture is synchronous; the database is made on a loop of its own.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, create_database(cluster.url())).result()


@dataclass
class Replicas:
    database_url: str
    first: AppServer
    second: AppServer

    @contextlib.asynccontextmanager
    async def clients(self, address: str) -> AsyncIterator[tuple[httpx.AsyncClient, ...]]:
        """A client to each replica, both as the client at ``address``."""
        headers = {"X-Forwarded-For": address}
        async with (
            httpx.AsyncClient(base_url=self.first.base_url, headers=headers, timeout=30) as a,
            httpx.AsyncClient(base_url=self.second.base_url, headers=headers, timeout=30) as b,
        ):
            yield a, b


def start_replicas(
    cluster: PostgresCluster, bouncer: PgBouncer, redis_url: str, start_server: StartServer
) -> Replicas:
    database_url = _new_database(cluster)
    env = replica_env(database_url, bouncer, redis_url)
    # The first one migrates the database; both are served through PgBouncer.
    first, second = start_server(env["DATABASE_URL"], env), start_server(env["DATABASE_URL"], env)
    return Replicas(database_url, first, second)


@pytest.fixture(scope="module")
def replicas(
    pg_cluster: PostgresCluster, pgbouncer: PgBouncer, redis_url: str, start_server: StartServer
) -> Replicas:
    return start_replicas(pg_cluster, pgbouncer, redis_url, start_server)


async def test_the_login_limit_is_counted_once_across_replicas(replicas: Replicas) -> None:
    async with replicas.clients(unique_address()) as (a, b):
        account = await sign_up_via(a)
        wrong = {"email": account.email, "password": "not-the-password"}
        statuses = [
            (await http.post(LOGIN_URL, json=wrong)).status_code for http in (a, b, a, b, a, b)
        ]
        # The right password from the same address is refused too: the limit is the address's
        # on this account, wherever it asks.
        right = await b.post(LOGIN_URL, json={"email": account.email, "password": account.password})

    assert statuses == [401] * LOGIN_LIMIT + [429] * (6 - LOGIN_LIMIT)
    assert right.status_code == 429
    assert int(right.headers["Retry-After"]) >= 1


async def test_a_session_ended_through_one_replica_is_refused_by_the_other(
    replicas: Replicas,
) -> None:
    async with replicas.clients(unique_address()) as (a, b):
        account = await sign_up_via(a)
        assert (await b.get(account.tasks_url, headers=account.headers)).status_code == 200
        assert (await a.post("/api/auth/logout", headers=account.headers)).status_code == 204
        ended_at = time.monotonic()
        refused_after = None
        while time.monotonic() - ended_at < 5:
            if (await b.get(account.tasks_url, headers=account.headers)).status_code == 401:
                refused_after = time.monotonic() - ended_at
                break
            await asyncio.sleep(0.02)

    print(f"\nsession ended on one replica, refused on the other after {refused_after} s")
    assert refused_after is not None
    assert refused_after < PROPAGATION_SECONDS


async def test_a_change_through_one_replica_reaches_a_stream_on_the_other(
    replicas: Replicas,
) -> None:
    async with replicas.clients(unique_address()) as (a, b):
        account = await sign_up_via(a)
        url = f"/api/{account.id}/events"
        async with aconnect_sse(b, "GET", url, headers=account.headers) as stream:
            assert stream.response.status_code == 200
            events = stream.aiter_sse()
            created = await a.post(
                account.tasks_url, json={"title": "via A"}, headers=account.headers
            )
            assert created.status_code == 201
            sent_at = time.monotonic()
            async with asyncio.timeout(5):
                event = await anext(e async for e in events if e.event == "task.upsert")
            delivered_after = time.monotonic() - sent_at

    print(f"\nchange through one replica streamed by the other after {delivered_after:.3f} s")
    assert event.json()["task"]["id"] == created.json()["id"]
    assert delivered_after < PROPAGATION_SECONDS


@dataclass
class Writes:
    acknowledged: dict[str, str] = field(default_factory=dict)  # key -> task id
    answers: dict[str, list[int | str]] = field(default_factory=lambda: {"a": [], "b": []})
    acknowledged_after_kill: int = 0
    # Set once a quarter of the writes are acknowledged: the moment of the kill.
    under_way: asyncio.Event = field(default_factory=asyncio.Event)


async def test_killing_one_replica_mid_load_loses_no_acknowledged_write(
    pg_cluster: PostgresCluster, pgbouncer: PgBouncer, redis_url: str, start_server: StartServer
) -> None:
    """Writers alternate between the replicas and retry a failed write, with its key, on the
    other one, as a load balancer's retry would; one replica's whole process group is killed
    (SIGKILL) while they write."""
    replicas = start_replicas(pg_cluster, pgbouncer, redis_url, start_server)
    writes = Writes()
    killed = asyncio.Event()
    async with replicas.clients(unique_address()) as (a, b):
        account = await sign_up_via(b)
        servers = {"a": a, "b": b}

        async def write(writer: int) -> None:
            for n in range(WRITES_PER_WRITER):
                key = f"w{writer}-{n}-{uuid.uuid4().hex[:8]}"
                target = "a" if (writer + n) % 2 else "b"
                while key not in writes.acknowledged:
                    try:
                        response = await servers[target].post(
                            account.tasks_url,
                            json={"title": key},
                            headers={**account.headers, "Idempotency-Key": key},
                        )
                    except httpx.TransportError as error:
                        writes.answers[target].append(type(error).__name__)
                        target = "b"
                        continue
                    writes.answers[target].append(response.status_code)
                    if response.status_code == 201:
                        writes.acknowledged[key] = response.json()["id"]
                        writes.acknowledged_after_kill += killed.is_set()
                        if len(writes.acknowledged) >= WRITERS * WRITES_PER_WRITER // 4:
                            writes.under_way.set()
                    else:
                        target = "b"

        async def kill_first_replica() -> None:
            await writes.under_way.wait()
            assert replicas.first.process is not None
            os.killpg(replicas.first.process.pid, signal.SIGKILL)
            killed.set()

        async with asyncio.timeout(LOAD_DEADLINE_SECONDS):
            await asyncio.gather(kill_first_replica(), *(write(w) for w in range(WRITERS)))
        still_serving = await b.get(account.tasks_url, headers=account.headers)

    rows = await fetch(
        replicas.database_url,
        "SELECT id::text, title FROM tasks WHERE user_id = $1",
        uuid.UUID(account.id),
    )
    stored = {row["title"]: row["id"] for row in rows}
    print(
        f"\n{len(writes.acknowledged)} writes acknowledged ({writes.acknowledged_after_kill} after "
        f"the kill); answers from the killed replica: {sorted(set(map(str, writes.answers['a'])))}"
    )
    assert len(writes.acknowledged) == WRITERS * WRITES_PER_WRITER
    # Every acknowledged write is stored, once, under the id it was acknowledged with.
    assert stored == writes.acknowledged
    # The replica left standing answered everything it was sent, before and after the kill.
    assert set(writes.answers["b"]) == {201}
    assert writes.acknowledged_after_kill > 0
    assert still_serving.status_code == 200
