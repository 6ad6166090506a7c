"""Two clients editing one task with conditional PATCHes, as a property (issue 15): whatever the
interleaving, sequential or at the same instant, no acknowledged change is lost.

Each client holds a view of the task (its version and fields) and sends every PATCH with
``If-Match: "<its version>"``. A 200 is an acknowledged write, and the client adopts the answer;
a 412 hands it the current task, which it adopts before its next turn. Invariant: the
acknowledged writes, ordered by the version they produced, form one chain from version 1, each
conditioned on the version the previous one produced and each the previous state plus its own
changes; the task in the database is the last of them.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.accounts import Account
from tests.fixtures.tasks import assert_body_matches_row, create_task, etag, task_row

# Every test here writes tasks for the package's shared accounts (see conftest.py).
pytestmark = pytest.mark.usefixtures("clean_tasks")

EDITABLE = ("title", "description")
FIELD_SETS = [("title",), ("description",), ("title", "description")]
CLIENTS = ("A", "B")
TIMEOUT_SECONDS = 30


@dataclass
class View:
    """What a client believes the task is."""

    version: int
    fields: dict[str, Any]

    @classmethod
    def of(cls, task: dict[str, Any]) -> View:
        return cls(version=task["version"], fields={name: task[name] for name in EDITABLE})


@dataclass(frozen=True)
class Ack:
    """An acknowledged write: what it was conditioned on, what it changed, what it answered."""

    client: str
    if_match: int
    changes: dict[str, str]
    body: dict[str, Any]


@dataclass(frozen=True)
class Step:
    """Who writes at this step (one client, or both at the same instant), and which fields."""

    who: str  # "A", "B" or "both"
    fields: dict[str, tuple[str, ...]]


steps = st.builds(
    Step,
    who=st.sampled_from(["A", "B", "both"]),
    fields=st.fixed_dictionaries({client: st.sampled_from(FIELD_SETS) for client in CLIENTS}),
)


class Editors:
    """The two clients and what they were told."""

    def __init__(self, client: httpx.AsyncClient, account: Account, task: dict[str, Any]):
        self._client = client
        self._account = account
        self.url = f"{account.tasks_url}/{task['id']}"
        self.views = {name: View.of(task) for name in CLIENTS}
        self.acks: list[Ack] = []
        self._fresh = itertools.count()

    async def patch(self, name: str, fields: tuple[str, ...]) -> int:
        """One conditional PATCH by ``name`` setting ``fields`` to values never used before;
        the answer's status."""
        view = self.views[name]
        changes = {field: f"{name}{next(self._fresh)} {field}" for field in fields}
        response = await self._client.patch(
            self.url,
            json=changes,
            headers={**self._account.headers, "If-Match": etag(view.version)},
        )
        if response.status_code == 200:
            body = response.json()
            assert response.headers["etag"] == etag(body["version"])
            self.acks.append(Ack(name, view.version, changes, body))
            self.views[name] = View.of(body)
        else:
            assert response.status_code == 412, response.text
            current = response.json()["current"]
            assert response.json()["code"] == "version_conflict"
            assert response.headers["etag"] == etag(current["version"])
            assert current["version"] != view.version
            self.views[name] = View.of(current)  # merged (here: adopted) before the next turn
        return response.status_code


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(schedule=st.lists(steps, min_size=1, max_size=12))
async def test_interleaved_conditional_patches_never_lose_an_acknowledged_change(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine, schedule: list[Step]
) -> None:
    task = await create_task(client, account, "start", description="start")
    editors = Editors(client, account, task)

    async with asyncio.timeout(TIMEOUT_SECONDS):
        for step in schedule:
            row = await task_row(engine, task["id"])
            assert row is not None
            holding_current = [n for n in CLIENTS if editors.views[n].version == row["version"]]
            if step.who == "both":
                statuses = await asyncio.gather(
                    *(editors.patch(name, step.fields[name]) for name in CLIENTS)
                )
                # Two writes conditioned on the current version: exactly one wins. A write
                # conditioned on an older one never does.
                winners = [name for name, s in zip(CLIENTS, statuses, strict=True) if s == 200]
                assert len(winners) == min(1, len(holding_current)), (statuses, holding_current)
                assert set(winners) <= set(holding_current)
            else:
                status = await editors.patch(step.who, step.fields[step.who])
                assert (status == 200) == (step.who in holding_current)

    # The acknowledged writes, by the version they produced, are one unbroken chain.
    chain = sorted(editors.acks, key=lambda ack: ack.body["version"])
    assert [ack.body["version"] for ack in chain] == list(range(2, 2 + len(chain)))
    state = {name: task[name] for name in EDITABLE}
    previous_version = 1
    for ack in chain:
        assert ack.if_match == previous_version
        state = {**state, **ack.changes}
        # Nothing an earlier acknowledged write set was silently undone.
        assert {name: ack.body[name] for name in EDITABLE} == state
        previous_version = ack.body["version"]
    final = await task_row(engine, task["id"])
    assert final is not None
    assert final["version"] == previous_version
    assert {name: final[name] for name in EDITABLE} == state
    if chain:
        assert_body_matches_row(chain[-1].body, final)


async def test_two_patches_on_the_same_version_at_once_one_wins_and_the_other_gets_it(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    # The concurrent case on its own, repeated: the loser's 412 carries the winner's write.
    for _ in range(10):
        task = await create_task(client, account, "start")
        url = f"{account.tasks_url}/{task['id']}"
        headers = {**account.headers, "If-Match": '"1"'}

        async with asyncio.timeout(TIMEOUT_SECONDS):
            a, b = await asyncio.gather(
                client.patch(url, json={"title": "from A"}, headers=headers),
                client.patch(url, json={"title": "from B"}, headers=headers),
            )

        assert sorted([a.status_code, b.status_code]) == [200, 412], (a.text, b.text)
        winner, loser = (a, b) if a.status_code == 200 else (b, a)
        assert winner.json()["version"] == 2
        assert loser.json()["current"] == winner.json()
        assert loser.headers["etag"] == '"2"'
        assert_body_matches_row(winner.json(), await task_row(engine, task["id"]))
