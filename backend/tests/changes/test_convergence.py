"""Rebuilding a client's state from /changes always ends where the server is (issue 16).

A client applies each page of changes to its copy: an upsert puts the task in, a delete takes it
out. Whatever the writes (creates, edits, toggles, trashes, restores, purges), however they
interleave, and wherever the client syncs, its copy equals the server's list after a final sync.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.accounts import Account, sign_up_via
from tests.fixtures.processes import AppServer, two_servers_serving

pytestmark = pytest.mark.usefixtures("clean_database")
TIMEOUT_SECONDS = 60


@dataclass
class Replica:
    """A client's copy of the tasks, kept by the feed alone."""

    http: httpx.AsyncClient
    account: Account
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    cursor: str | None = None

    async def sync(self) -> None:
        while True:
            params = {"limit": "7"} | ({"since": self.cursor} if self.cursor else {})
            response = await self.http.get(
                f"/api/{self.account.id}/changes", params=params, headers=self.account.headers
            )
            assert response.status_code == 200, response.text
            body = response.json()
            ids = [
                c["task"]["id"] if c["op"] == "upsert" else c["task_id"] for c in body["changes"]
            ]
            assert len(ids) == len(set(ids)), "a task twice in one page"
            for change in body["changes"]:
                if change["op"] == "upsert":
                    self.tasks[change["task"]["id"]] = change["task"]
                else:
                    self.tasks.pop(change["task_id"], None)
            self.cursor = body["cursor"]
            if not body["has_more"]:
                return


async def server_tasks(http: httpx.AsyncClient, account: Account) -> dict[str, dict[str, Any]]:
    listed: dict[str, dict[str, Any]] = {}
    url: str | None = f"{account.tasks_url}?limit=500"
    while url is not None:
        response = await http.get(url, headers=account.headers)
        assert response.status_code == 200, response.text
        listed |= {task["id"]: task for task in response.json()}
        link = response.headers.get("Link")
        url = link[1 : link.index(">")] if link else None
    return listed


OPS = ("create", "edit", "toggle", "trash", "restore", "purge", "empty")


async def act(
    http: httpx.AsyncClient, account: Account, known: list[str], op: str, pick: int
) -> None:
    """One write; one on a task that is elsewhere (a restore of a live task) is a 404."""
    base = f"/api/{account.id}"
    target = known[pick % len(known)] if known else None
    if op == "create" or target is None:
        response = await http.post(
            f"{base}/tasks", json={"title": f"t{pick}"}, headers=account.headers
        )
        assert response.status_code == 201, response.text
        known.append(response.json()["id"])
        return
    method, path, body = {
        "edit": ("PATCH", f"/tasks/{target}", {"title": f"edit {pick}"}),
        "toggle": ("PATCH", f"/tasks/{target}/complete", None),
        "trash": ("DELETE", f"/tasks/{target}", None),
        "restore": ("POST", f"/trash/{target}/restore", None),
        "purge": ("DELETE", f"/trash/{target}", None),
        "empty": ("DELETE", "/trash", None),
    }[op]
    response = await http.request(method, base + path, json=body, headers=account.headers)
    assert response.status_code in (200, 204, 404), response.text


steps = st.tuples(
    st.sampled_from(OPS),
    st.integers(0, 50),
    st.sampled_from(OPS),
    st.integers(0, 50),
    st.booleans(),  # the two clients' writes at the same instant, or one after the other
    st.booleans(),  # the replica syncs after this step
)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(schedule=st.lists(steps, min_size=1, max_size=15))
async def test_a_replica_rebuilt_from_the_feed_equals_the_server(
    client: httpx.AsyncClient, logged_in: Account, schedule: list[tuple[Any, ...]]
) -> None:
    replica = Replica(client, logged_in)
    known: list[str] = list((await server_tasks(client, logged_in)).keys())
    async with asyncio.timeout(TIMEOUT_SECONDS):
        await replica.sync()  # a full sync first
        for op_a, pick_a, op_b, pick_b, together, sync_after in schedule:
            if together:
                await asyncio.gather(
                    act(client, logged_in, known, op_a, pick_a),
                    act(client, logged_in, known, op_b, pick_b),
                )
            else:
                await act(client, logged_in, known, op_a, pick_a)
                await act(client, logged_in, known, op_b, pick_b)
            if sync_after:
                await replica.sync()
        await replica.sync()

    assert replica.tasks == await server_tasks(client, logged_in)


# --- Many writers through two server processes, one reader syncing all along -----------------

WRITERS = 8
WRITES_PER_WRITER = 30


@pytest.fixture(scope="module")
def two_servers(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[AppServer, AppServer]]:
    with two_servers_serving(database_url, tmp_path_factory.mktemp("feed-servers")) as servers:
        yield servers


@pytest.mark.slow
async def test_a_reader_syncing_during_concurrent_writes_through_two_processes_misses_nothing(
    two_servers: tuple[AppServer, AppServer],
) -> None:
    clients = [httpx.AsyncClient(base_url=server.base_url, timeout=30) for server in two_servers]
    try:
        account = await sign_up_via(clients[0])
        replica = Replica(clients[1], account)
        known: list[str] = []
        done = asyncio.Event()

        async def writer(number: int) -> None:
            rng = random.Random(number)
            http = clients[number % 2]
            for _ in range(WRITES_PER_WRITER):
                await act(http, account, known, rng.choice(OPS[:6]), rng.randrange(1000))

        async def reader() -> int:
            syncs = 0
            while not done.is_set():
                await replica.sync()
                syncs += 1
            return syncs

        async with asyncio.timeout(120):
            reading = asyncio.create_task(reader())
            await asyncio.gather(*(writer(n) for n in range(WRITERS)))
            done.set()
            syncs = await reading
            await replica.sync()

        assert syncs > 1
        assert replica.tasks == await server_tasks(clients[0], account)
        assert len(known) >= WRITERS  # the writers did create tasks
    finally:
        for http in clients:
            await http.aclose()
