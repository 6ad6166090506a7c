"""Manual order (issue 17): moving tasks within and across lists, and lists among lists;
concurrent moves; the keys' length over many moves, against a model of the moves."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.database import Database
from app.lists.repository import ListRepository
from app.positions.keys import POSITION_MAX_LENGTH, REBALANCE_ABOVE, append_key, key_between
from app.tasks.listing import Listing
from app.tasks.repository import TaskRepository
from tests.fixtures.accounts import Account
from tests.fixtures.tasks import create_task, etag, task_row
from tests.tasks.test_lists import inbox, lists_url, new_list

pytestmark = pytest.mark.usefixtures("clean_tasks")


async def move(
    client: httpx.AsyncClient, account: Account, task_id: str, **body: Any
) -> httpx.Response:
    return await client.post(
        f"{account.tasks_url}/{task_id}/move", json=body, headers=account.headers
    )


async def order(client: httpx.AsyncClient, account: Account, list_id: str) -> list[str]:
    """The list's task ids as a client orders them: by position, compared by code point."""
    response = await client.get(
        account.tasks_url, params={"list_id": list_id, "limit": 500}, headers=account.headers
    )
    assert response.status_code == 200
    tasks = response.json()
    return [task["id"] for task in sorted(tasks, key=lambda task: task["position"])]


async def test_moves_before_after_and_to_the_end(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    a, b, c = [await create_task(client, account, title) for title in "abc"]
    list_id = a["list_id"]
    assert await order(client, account, list_id) == [a["id"], b["id"], c["id"]]

    response = await move(client, account, c["id"], before_id=a["id"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["version"] == 2
    assert response.headers["ETag"] == etag(2)
    assert await order(client, account, list_id) == [c["id"], a["id"], b["id"]]
    row = await task_row(engine, c["id"])
    assert row is not None
    assert row["position"] == body["position"]

    assert (await move(client, account, c["id"], after_id=a["id"])).status_code == 200
    assert await order(client, account, list_id) == [a["id"], c["id"], b["id"]]
    assert (await move(client, account, a["id"])).status_code == 200  # neither: last
    assert await order(client, account, list_id) == [c["id"], b["id"], a["id"]]
    assert (await move(client, account, c["id"], after_id=a["id"])).status_code == 200
    assert await order(client, account, list_id) == [b["id"], a["id"], c["id"]]


async def test_a_move_to_another_list_keeps_the_id(
    client: httpx.AsyncClient, account: Account
) -> None:
    errands = await new_list(client, account)
    task = await create_task(client, account, "travel")
    other = await client.post(
        account.tasks_url,
        json={"title": "there", "list_id": errands["id"]},
        headers=account.headers,
    )
    response = await move(
        client, account, task["id"], list_id=errands["id"], before_id=other.json()["id"]
    )
    assert response.status_code == 200, response.text
    assert response.json()["id"] == task["id"]
    assert response.json()["list_id"] == errands["id"]
    assert await order(client, account, errands["id"]) == [task["id"], other.json()["id"]]
    assert await order(client, account, task["list_id"]) == []


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"before_id": "SELF"}, 422, "validation_error"),
        ({"before_id": "A", "after_id": "A"}, 422, "validation_error"),
        ({"before_id": "MISSING"}, 409, "anchor_not_found"),
        ({"list_id": "MISSING"}, 404, "list_not_found"),
    ],
)
async def test_a_bad_move_is_refused_and_changes_nothing(
    client: httpx.AsyncClient,
    account: Account,
    engine: AsyncEngine,
    body: dict[str, str],
    status: int,
    code: str,
) -> None:
    task = await create_task(client, account, "t")
    anchor = await create_task(client, account, "a")
    names = {"SELF": task["id"], "A": anchor["id"], "MISSING": str(uuid.uuid4())}
    response = await move(client, account, task["id"], **{k: names[v] for k, v in body.items()})
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    row = await task_row(engine, task["id"])
    assert row is not None
    assert row["version"] == 1
    assert row["position"] == task["position"]


async def test_an_anchor_in_another_list_is_refused(
    client: httpx.AsyncClient, account: Account
) -> None:
    errands = await new_list(client, account)
    task = await create_task(client, account, "t")
    elsewhere = await create_task(client, account, "e", list_id=errands["id"])
    response = await move(client, account, task["id"], before_id=elsewhere["id"])
    assert response.status_code == 409
    assert response.json()["code"] == "anchor_not_found"


async def test_a_move_honours_if_match_and_replays_its_key(
    client: httpx.AsyncClient, account: Account
) -> None:
    a, b = [await create_task(client, account, title) for title in "ab"]
    url = f"{account.tasks_url}/{b['id']}/move"
    stale = await client.post(
        url, json={"before_id": a["id"]}, headers={**account.headers, "If-Match": etag(5)}
    )
    assert stale.status_code == 412
    assert stale.json()["current"]["id"] == b["id"]
    headers = {**account.headers, "If-Match": etag(1), "Idempotency-Key": "move-1"}
    first = await client.post(url, json={"before_id": a["id"]}, headers=headers)
    assert first.status_code == 200
    again = await client.post(url, json={"before_id": a["id"]}, headers=headers)
    assert again.status_code == 200
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first.json()
    assert await order(client, account, a["list_id"]) == [b["id"], a["id"]]


async def test_fifty_concurrent_moves_into_one_gap_all_succeed_with_distinct_positions(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    left, right = [await create_task(client, account, title) for title in ("left", "right")]
    movers = [await create_task(client, account, f"m{n}") for n in range(50)]
    responses = await asyncio.gather(
        *(move(client, account, task["id"], after_id=left["id"]) for task in movers)
    )
    assert [response.status_code for response in responses] == [200] * 50
    async with engine.connect() as connection:
        positions = (
            (
                await connection.execute(
                    text("SELECT position FROM tasks WHERE list_id = :id AND position IS NOT NULL"),
                    {"id": uuid.UUID(left["list_id"])},
                )
            )
            .scalars()
            .all()
        )
    assert len(positions) == len(set(positions)) == 52
    ordered = await order(client, account, left["list_id"])
    assert ordered[0] == left["id"]
    assert ordered[-1] == right["id"]
    assert set(ordered[1:-1]) == {task["id"] for task in movers}
    assert all(len(position) <= REBALANCE_ABOVE for position in positions)


async def test_lists_move_among_themselves(client: httpx.AsyncClient, account: Account) -> None:
    default = await inbox(client, account)
    one, two = await new_list(client, account, "one"), await new_list(client, account, "two")
    response = await client.post(
        f"{lists_url(account)}/{two['id']}/move",
        json={"before_id": default["id"]},
        headers=account.headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["version"] == 2
    listed = (await client.get(lists_url(account), headers=account.headers)).json()
    assert [row["id"] for row in listed] == [two["id"], default["id"], one["id"]]
    response = await client.post(
        f"{lists_url(account)}/{two['id']}/move", json={}, headers=account.headers
    )
    assert response.status_code == 200, response.text
    listed = (await client.get(lists_url(account), headers=account.headers)).json()
    assert [row["id"] for row in listed] == [default["id"], one["id"], two["id"]]


def test_append_keys_match_the_databases_and_sort_like_their_numbers() -> None:
    numbers = [*sorted(random.Random(7).sample(range(2**62), 2000)), 0, 1, 61, 62, 2**63 - 1]
    numbers.sort()
    keys = [append_key(number) for number in numbers]
    assert keys == sorted(keys)
    assert max(map(len, keys)) <= 12 <= POSITION_MAX_LENGTH


async def test_append_key_equals_position_key_in_sql(engine: AsyncEngine) -> None:
    numbers = [0, 1, 61, 62, 3843, 3844, 10**9, 2**63 - 1]
    async with engine.connect() as connection:
        for number in numbers:
            key = await connection.scalar(text("SELECT position_key(:n)"), {"n": number})
            assert key == append_key(number)


MOVES = 10_000


async def test_ten_thousand_random_moves_keep_keys_short_and_the_order_a_model_predicts(
    database: Database, account: Account, client: httpx.AsyncClient
) -> None:
    """Moves through the repository (the route's own code, without HTTP's cost per move) into
    random gaps, and every fourth one right after the same first task, into a gap that narrows
    until respacing widens it."""
    tasks = TaskRepository(database, account.id)
    ids = [(await tasks.create(title=f"t{n}"))["id"] for n in range(40)]
    model = list(ids)
    versions_before = sum(row["version"] for row in await tasks.list(limit=500))
    rng = random.Random(17)
    longest = 0
    pinned = ids[0]  # never moved: every fourth move goes right after it, narrowing one gap
    for number in range(MOVES):
        item = rng.choice(model[1:])
        model.remove(item)
        index = 1 if number % 4 == 0 else rng.randrange(1, len(model) + 1)
        if index == len(model):
            moved = await tasks.move(item)
        elif number % 8 == 0:
            moved = await tasks.move(item, after_id=pinned)
        else:
            moved = await tasks.move(item, before_id=model[index])
        model.insert(index, item)
        longest = max(longest, len(moved["position"]))
    rows = await tasks.list(limit=500)
    by_position = [row["id"] for row in sorted(rows, key=lambda row: row["position"])]
    assert by_position == model
    assert longest <= REBALANCE_ABOVE
    assert max(len(row["position"]) for row in rows) <= REBALANCE_ABOVE
    # Each move is one new version of the moved task; what is left over are the neighbours
    # that respacing rewrote: rare, and a window, never the list each time.
    respaced = sum(row["version"] for row in rows) - versions_before - MOVES
    assert 0 < respaced < MOVES // 4


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    moves=st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 6), st.booleans(), st.booleans()),
        max_size=20,
    )
)
async def test_any_sequence_of_moves_reads_back_in_the_models_order(
    moves: list[tuple[int, int, bool, bool]], database: Database, account: Account
) -> None:
    """(item, place, anchored after its left neighbour, into the other list): each move as the
    API takes it, and both lists read back in the order a plain model of lists predicts."""
    tasks = TaskRepository(database, account.id)
    lists = ListRepository(database, account.id)
    home, other = [(await lists.create(name=name))["id"] for name in ("home", "other")]
    ids = [(await tasks.create(title=f"t{n}", list_id=home))["id"] for n in range(6)]
    model: dict[uuid.UUID, list[uuid.UUID]] = {home: list(ids), other: []}
    where = dict.fromkeys(ids, home)
    for item_number, place, after, switch in moves:
        item = ids[item_number]
        source = where[item]
        target = (other if source == home else home) if switch else source
        model[source].remove(item)
        destination = model[target]
        index = min(place, len(destination))
        anchor: dict[str, uuid.UUID] = {}
        if index < len(destination):
            if after and index > 0:
                anchor = {"after_id": destination[index - 1]}
            else:
                anchor = {"before_id": destination[index]}
        await tasks.move(item, list_id=target if switch else None, **anchor)
        destination.insert(index, item)
        where[item] = target
    for list_id, expected in model.items():
        rows = await tasks.list(Listing.of(list_id=list_id), limit=500)
        assert [row["id"] for row in sorted(rows, key=lambda row: row["position"])] == expected


async def test_respacing_moves_into_moves_out_creates_and_trashing_at_once_all_succeed(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    """The gap between two tasks is first narrowed until the next move into it respaces; then
    moves into that gap, moves out of the list, creates into it and deletions run together."""
    errands = await new_list(client, account)
    elsewhere = await new_list(client, account, "elsewhere")
    tasks = [await create_task(client, account, f"t{n}", list_id=errands["id"]) for n in range(30)]
    left = tasks[0]
    for number in range(200):  # each goes right after `left`: the gap narrows every time
        async with engine.connect() as connection:
            lower, upper = (
                await connection.execute(
                    text(
                        "SELECT position FROM tasks WHERE list_id = :id AND position IS NOT NULL "
                        "ORDER BY position LIMIT 2"
                    ),
                    {"id": uuid.UUID(errands["id"])},
                )
            ).scalars()
        if len(key_between(lower, upper)) > REBALANCE_ABOVE:
            break  # the next move into this gap respaces
        task = tasks[1 + number % 19]
        assert (await move(client, account, task["id"], after_id=left["id"])).status_code == 200
    else:
        pytest.fail("the gap never narrowed")
    async with engine.connect() as connection:
        before = dict(
            (
                await connection.execute(
                    text("SELECT id::text, version FROM tasks WHERE list_id = :id"),
                    {"id": uuid.UUID(errands["id"])},
                )
            ).all()
        )
    writes = [
        *(move(client, account, task["id"], after_id=left["id"]) for task in tasks[20:26]),
        *(move(client, account, task["id"], list_id=elsewhere["id"]) for task in tasks[26:29]),
        *(
            client.post(
                account.tasks_url,
                json={"title": f"new {n}", "list_id": errands["id"]},
                headers=account.headers,
            )
            for n in range(5)
        ),
        client.delete(f"{account.tasks_url}/{tasks[29]['id']}", headers=account.headers),
        client.delete(f"{account.tasks_url}/{tasks[10]['id']}", headers=account.headers),
    ]
    responses = await asyncio.gather(*writes)
    assert [r.status_code for r in responses] == [200] * 9 + [201] * 5 + [204] * 2, [
        r.text for r in responses if r.status_code >= 300
    ]
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                text(
                    "SELECT id::text, list_id::text, position, version FROM tasks "
                    "WHERE user_id = :user AND deleted_at IS NULL"
                ),
                {"user": account.id},
            )
        ).all()
    by_list: dict[str, list[str]] = {}
    for row in rows:
        by_list.setdefault(row.list_id, []).append(row.position)
    for positions in by_list.values():
        assert len(positions) == len(set(positions))
        assert all(len(position) <= REBALANCE_ABOVE for position in positions)
    assert len(by_list[errands["id"]]) == 30 - 3 - 2 + 5
    assert len(by_list[elsewhere["id"]]) == 3
    # The moves into the narrowed gap respaced neighbours that did not move themselves.
    moved = {task["id"] for task in tasks[20:]} | {tasks[10]["id"]}
    rewritten = [
        row.id
        for row in rows
        if row.id in before and row.id not in moved and row.version > before[row.id]
    ]
    assert rewritten
    # What the API orders is what the moves asked for: the six land right after `left`.
    ordered = await order(client, account, errands["id"])
    assert ordered[0] == left["id"]
    assert set(ordered[1:7]) == {task["id"] for task in tasks[20:26]}
