"""GET /api/{user_id}/changes (issue 16): a full snapshot without a cursor, then each task that
changed since a cursor once, in its latest state, or its deletion; 410 for a cursor the feed
can no longer serve."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.changes.retention import TOMBSTONE_RETENTION
from app.db.database import Database
from app.db.purge import BatchPurge
from tests.fixtures.accounts import Account, sign_up_via
from tests.fixtures.tasks import create_task

pytestmark = pytest.mark.usefixtures("clean_database")


def changes_url(account: Account) -> str:
    return f"/api/{account.id}/changes"


async def changes(
    client: httpx.AsyncClient, account: Account, since: str | None = None, **query: Any
) -> dict[str, Any]:
    params = {**query, **({"since": since} if since is not None else {})}
    response = await client.get(changes_url(account), params=params, headers=account.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"changes", "cursor", "has_more"}
    return body


async def write(
    client: httpx.AsyncClient, account: Account, method: str, path: str, **body: Any
) -> httpx.Response:
    response = await client.request(
        method, f"/api/{account.id}{path}", headers=account.headers, **body
    )
    assert response.status_code < 300, response.text
    return response


async def test_without_a_cursor_the_feed_is_a_snapshot_of_the_live_tasks(
    client: httpx.AsyncClient, logged_in: Account
) -> None:
    first = await create_task(client, logged_in, "first")
    trashed = await create_task(client, logged_in, "trashed")
    second = await create_task(client, logged_in, "second")
    await write(client, logged_in, "DELETE", f"/tasks/{trashed['id']}")
    await write(client, logged_in, "PATCH", f"/tasks/{first['id']}", json={"title": "changed"})

    body = await changes(client, logged_in)

    listed = (await client.get(logged_in.tasks_url, headers=logged_in.headers)).json()
    # In the order they last changed; the trashed task is not there at all.
    assert body["changes"] == [
        {"op": "upsert", "task": next(t for t in listed if t["id"] == task_id)}
        for task_id in (second["id"], first["id"])
    ]
    assert body["has_more"] is False
    assert body["cursor"].isdigit()


async def test_since_a_cursor_each_changed_task_appears_once_in_its_latest_state(
    client: httpx.AsyncClient, logged_in: Account
) -> None:
    untouched = await create_task(client, logged_in, "untouched")
    edited = await create_task(client, logged_in, "edited")
    trashed = await create_task(client, logged_in, "trashed")
    restored = await create_task(client, logged_in, "restored")
    purged = await create_task(client, logged_in, "purged")
    cursor = (await changes(client, logged_in))["cursor"]

    await write(client, logged_in, "PATCH", f"/tasks/{edited['id']}", json={"title": "one"})
    await write(client, logged_in, "PATCH", f"/tasks/{edited['id']}/complete")
    await write(client, logged_in, "DELETE", f"/tasks/{trashed['id']}")
    await write(client, logged_in, "DELETE", f"/tasks/{restored['id']}")
    await write(client, logged_in, "POST", f"/trash/{restored['id']}/restore")
    await write(client, logged_in, "DELETE", f"/tasks/{purged['id']}")
    await write(client, logged_in, "DELETE", f"/trash/{purged['id']}")
    created = await create_task(client, logged_in, "created")

    body = await changes(client, logged_in, cursor)

    current = {
        task["id"]: task
        for task in (await client.get(logged_in.tasks_url, headers=logged_in.headers)).json()
    }
    assert body["changes"] == [
        {"op": "upsert", "task": current[edited["id"]]},
        {"op": "delete", "task_id": trashed["id"]},
        {"op": "upsert", "task": current[restored["id"]]},
        {"op": "delete", "task_id": purged["id"]},
        {"op": "upsert", "task": current[created["id"]]},
    ]
    assert current[edited["id"]]["completed"] is True
    assert untouched["id"] not in [c.get("task", {}).get("id") for c in body["changes"]]
    assert int(body["cursor"]) > int(cursor)
    # Nothing since: no change, and the cursor stays where it was.
    again = await changes(client, logged_in, body["cursor"])
    assert again == {"changes": [], "cursor": body["cursor"], "has_more": False}


async def test_pages_follow_the_cursor_until_has_more_is_false(
    client: httpx.AsyncClient, logged_in: Account
) -> None:
    created = [(await create_task(client, logged_in, f"t{n}"))["id"] for n in range(7)]

    seen: list[str] = []
    body = await changes(client, logged_in, limit=3)
    seen += [change["task"]["id"] for change in body["changes"]]
    pages = 1
    while body["has_more"]:
        assert len(body["changes"]) == 3
        body = await changes(client, logged_in, body["cursor"], limit=3)
        seen += [change["task"]["id"] for change in body["changes"]]
        pages += 1

    assert seen == created
    assert pages == 3


async def test_the_feed_is_the_owners_alone(client: httpx.AsyncClient, logged_in: Account) -> None:
    other = await sign_up_via(client)
    await create_task(client, other, "theirs")
    mine = await create_task(client, logged_in, "mine")

    body = await changes(client, logged_in)
    assert [change["task"]["id"] for change in body["changes"]] == [mine["id"]]
    refused = await client.get(changes_url(other), headers=logged_in.headers)
    assert refused.status_code == 403
    # Another owner's cursor means nothing here: numbers are per owner.
    assert (await changes(client, other))["changes"][0]["task"]["title"] == "theirs"


async def test_a_new_account_has_no_task_changes_and_a_cursor_past_its_inbox(
    client: httpx.AsyncClient, logged_in: Account
) -> None:
    """The account's Inbox, made with it, is its first change (a list: shown with
    include=lists only), so the first cursor is past it."""
    first = await changes(client, logged_in)
    assert first["changes"] == []
    assert first["has_more"] is False
    assert int(first["cursor"]) > 0
    assert await changes(client, logged_in, "0") == first
    assert await changes(client, logged_in, first["cursor"]) == first


@pytest.mark.parametrize("since", ["abc", "-1", "1.2.3", ".5", "", "1" * 19])
async def test_a_malformed_cursor_is_422(
    client: httpx.AsyncClient, logged_in: Account, since: str
) -> None:
    response = await client.get(
        changes_url(logged_in), params={"since": since}, headers=logged_in.headers
    )

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    assert response.json()["errors"][0]["loc"][:2] == ["query", "since"]


@pytest.mark.parametrize("limit", [0, 1001])
async def test_limit_is_bounded(client: httpx.AsyncClient, logged_in: Account, limit: int) -> None:
    response = await client.get(
        changes_url(logged_in), params={"limit": limit}, headers=logged_in.headers
    )
    assert response.status_code == 422


async def test_a_cursor_beyond_any_change_is_410(
    client: httpx.AsyncClient, logged_in: Account
) -> None:
    await create_task(client, logged_in)
    cursor = int((await changes(client, logged_in))["cursor"])

    response = await client.get(
        changes_url(logged_in), params={"since": str(cursor + 1)}, headers=logged_in.headers
    )

    assert response.status_code == 410
    assert response.json()["code"] == "cursor_expired"


async def test_a_cursor_older_than_the_pruned_tombstones_is_410_and_a_newer_one_is_served(
    client: httpx.AsyncClient, logged_in: Account, engine: AsyncEngine, database: Database
) -> None:
    doomed = await create_task(client, logged_in, "doomed")
    old_cursor = (await changes(client, logged_in))["cursor"]
    await write(client, logged_in, "DELETE", f"/tasks/{doomed['id']}")
    await write(client, logged_in, "DELETE", f"/trash/{doomed['id']}")
    after_purge = (await changes(client, logged_in, old_cursor))["cursor"]
    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE task_tombstones SET purged_at = now() - interval '2 days'")
        )

    pruned = await BatchPurge(database, TOMBSTONE_RETENTION, timedelta(days=1)).purge()

    assert pruned == 1
    response = await client.get(
        changes_url(logged_in), params={"since": old_cursor}, headers=logged_in.headers
    )
    assert response.status_code == 410, response.text
    assert response.json()["code"] == "cursor_expired"
    assert await changes(client, logged_in, after_purge) == {
        "changes": [],
        "cursor": after_purge,
        "has_more": False,
    }


async def test_every_change_is_recorded_by_the_database_whoever_makes_it(
    client: httpx.AsyncClient, logged_in: Account, engine: AsyncEngine
) -> None:
    task = await create_task(client, logged_in, "by the API")
    cursor = (await changes(client, logged_in))["cursor"]

    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE tasks SET title = 'by an operator' WHERE id = :id"),
            {"id": uuid.UUID(task["id"])},
        )
        # Setting a value to itself is no change: not in the feed.
        await connection.execute(
            text("UPDATE tasks SET title = title WHERE id = :id"), {"id": uuid.UUID(task["id"])}
        )

    body = await changes(client, logged_in, cursor)
    assert [change["task"]["title"] for change in body["changes"]] == ["by an operator"]
    assert body["changes"][0]["task"]["version"] == 2


async def test_a_deleted_accounts_feed_goes_with_it(
    client: httpx.AsyncClient, logged_in: Account, engine: AsyncEngine
) -> None:
    await create_task(client, logged_in)
    async with engine.begin() as connection:
        await connection.execute(
            text("DELETE FROM users WHERE id = :id"), {"id": uuid.UUID(logged_in.id)}
        )
        heads = await connection.scalar(text("SELECT count(*) FROM change_heads"))
        tombstones = await connection.scalar(text("SELECT count(*) FROM task_tombstones"))

    assert (heads, tombstones) == (0, 0)
    response = await client.get(changes_url(logged_in), headers=logged_in.headers)
    assert response.status_code == 401


async def prune_every_tombstone(engine: AsyncEngine, database: Database) -> int:
    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE task_tombstones SET purged_at = now() - interval '2 days'")
        )
    return await BatchPurge(database, TOMBSTONE_RETENTION, timedelta(days=1)).purge()


@pytest.mark.parametrize("limit", [1000, 2], ids=["one-page", "paged"])
async def test_a_full_sync_after_pruned_tombstones_continues_without_410(
    client: httpx.AsyncClient,
    logged_in: Account,
    engine: AsyncEngine,
    database: Database,
    limit: int,
) -> None:
    kept = [(await create_task(client, logged_in, f"kept {n}"))["id"] for n in range(5)]
    doomed = await create_task(client, logged_in, "doomed")
    await write(client, logged_in, "DELETE", f"/tasks/{doomed['id']}")
    await write(client, logged_in, "DELETE", f"/trash/{doomed['id']}")
    # The purge's number, now forgotten, is above every live task's.
    assert await prune_every_tombstone(engine, database) == 1

    body = await changes(client, logged_in, limit=limit)
    seen = [change["task"]["id"] for change in body["changes"]]
    while body["has_more"]:
        body = await changes(client, logged_in, body["cursor"], limit=limit)
        seen += [c["task"]["id"] for c in body["changes"] if c["op"] == "upsert"]
    assert seen == kept
    # The cursor the full sync ended with goes on working.
    edited = await write(client, logged_in, "PATCH", f"/tasks/{kept[0]}", json={"title": "new"})
    after = await changes(client, logged_in, body["cursor"])
    assert after["changes"] == [{"op": "upsert", "task": edited.json()}]


async def test_a_deleted_accounts_cursor_is_401_not_410(
    client: httpx.AsyncClient, logged_in: Account, engine: AsyncEngine
) -> None:
    await create_task(client, logged_in)
    cursor = (await changes(client, logged_in))["cursor"]
    async with engine.begin() as connection:
        await connection.execute(
            text("DELETE FROM users WHERE id = :id"), {"id": uuid.UUID(logged_in.id)}
        )

    response = await client.get(
        changes_url(logged_in), params={"since": cursor}, headers=logged_in.headers
    )

    assert response.status_code == 401, response.text
