"""The trash (issue 16): DELETE moves a task there; the trash routes list, restore and delete
for good, under If-Match and Idempotency-Key like every write; the running service empties it
of tasks older than TRASH_RETENTION_DAYS."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.main import create_app
from tests.fixtures.accounts import Account
from tests.fixtures.app import make_settings
from tests.fixtures.tasks import (
    NOT_FOUND,
    REPLAYED,
    assert_body_matches_row,
    create_task,
    etag,
    is_trashed,
    task_count,
    task_row,
    trashed_count,
)

pytestmark = pytest.mark.usefixtures("clean_tasks")


def trash_url(account: Account) -> str:
    return f"/api/{account.id}/trash"


async def trashed(client: httpx.AsyncClient, account: Account, title: str = "old") -> dict:
    created = await create_task(client, account, title)
    response = await client.delete(f"{account.tasks_url}/{created['id']}", headers=account.headers)
    assert response.status_code == 204, response.text
    return created


async def test_delete_moves_the_task_to_the_trash_and_out_of_the_task_routes(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    created = await trashed(client, account)
    url = f"{account.tasks_url}/{created['id']}"

    assert await is_trashed(engine, created["id"])
    assert (await client.get(url, headers=account.headers)).json() == NOT_FOUND
    assert (await client.get(account.tasks_url, headers=account.headers)).json() == []
    for method, path in [("PATCH", ""), ("PUT", ""), ("PATCH", "/complete"), ("DELETE", "")]:
        response = await client.request(
            method, url + path, json={"title": "x"}, headers=account.headers
        )
        assert response.status_code == 404, (method, path, response.text)
    # Nothing the refused writes tried reached the row.
    row = await task_row(engine, created["id"])
    assert row is not None
    assert row["title"] == "old"
    assert row["version"] == 2  # trashing is a change


async def test_the_trash_lists_trashed_tasks_most_recently_deleted_first(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    first = await trashed(client, account, "first")
    second = await trashed(client, account, "second")
    await create_task(client, account, "live")

    response = await client.get(trash_url(account), headers=account.headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert [task["id"] for task in body] == [second["id"], first["id"]]
    for task in body:
        row = await task_row(engine, task["id"])
        assert_body_matches_row(task, row)
        assert row is not None
        assert task["deleted_at"] is not None
        assert set(task) == {*first, "deleted_at"}


async def test_the_trash_pages_with_a_link_header(
    client: httpx.AsyncClient, account: Account
) -> None:
    ids = [(await trashed(client, account, f"t{n}"))["id"] for n in range(5)]

    seen: list[str] = []
    url: str | None = f"{trash_url(account)}?limit=2"
    while url is not None:
        response = await client.get(url, headers=account.headers)
        assert response.status_code == 200, response.text
        seen += [task["id"] for task in response.json()]
        link = response.headers.get("Link")
        url = link[1 : link.index(">")] if link else None

    assert seen == ids[::-1]


async def test_the_trash_is_the_owners_alone(
    client: httpx.AsyncClient, account: Account, other_account: Account
) -> None:
    mine = await trashed(client, account)

    assert (await client.get(trash_url(other_account), headers=other_account.headers)).json() == []
    assert (await client.get(trash_url(account), headers=other_account.headers)).status_code == 403
    for method, path in [("POST", f"/{mine['id']}/restore"), ("DELETE", f"/{mine['id']}")]:
        response = await client.request(
            method, trash_url(other_account) + path, headers=other_account.headers
        )
        assert response.status_code == 404, response.text
        assert response.json() == NOT_FOUND
    response = await client.delete(trash_url(other_account), headers=other_account.headers)
    assert response.status_code == 204
    assert [
        t["id"] for t in (await client.get(trash_url(account), headers=account.headers)).json()
    ] == [mine["id"]]


async def test_restore_puts_the_task_back_as_it_was_with_a_new_version(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    created = await trashed(client, account)

    response = await client.post(
        f"{trash_url(account)}/{created['id']}/restore", headers=account.headers
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["version"] == 3
    assert response.headers["ETag"] == etag(3)
    moved = ("version", "updated_at", "position")
    assert {k: v for k, v in body.items() if k not in moved} == {
        k: v for k, v in created.items() if k not in moved
    }
    # Back at the end of its list (its old place may have been taken meanwhile).
    assert body["position"] > created["position"]
    assert_body_matches_row(body, await task_row(engine, created["id"]))
    assert not await is_trashed(engine, created["id"])
    listed = await client.get(account.tasks_url, headers=account.headers)
    assert [task["id"] for task in listed.json()] == [created["id"]]
    assert (await client.get(trash_url(account), headers=account.headers)).json() == []


async def test_restoring_a_task_not_in_the_trash_is_404(
    client: httpx.AsyncClient, account: Account
) -> None:
    live = await create_task(client, account)
    for task_id in (live["id"], str(uuid.uuid4())):
        response = await client.post(
            f"{trash_url(account)}/{task_id}/restore", headers=account.headers
        )
        assert response.status_code == 404
        assert response.json() == NOT_FOUND


async def test_restore_honours_if_match(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    created = await trashed(client, account)  # version 2 in the trash
    url = f"{trash_url(account)}/{created['id']}/restore"

    stale = await client.post(url, headers={**account.headers, "If-Match": etag(1)})

    assert stale.status_code == 412, stale.text
    assert stale.json()["code"] == "version_conflict"
    assert stale.json()["current"]["version"] == 2
    assert stale.headers["ETag"] == etag(2)
    assert await is_trashed(engine, created["id"])

    fresh = await client.post(url, headers={**account.headers, "If-Match": etag(2)})
    assert fresh.status_code == 200, fresh.text
    assert fresh.json()["version"] == 3


async def test_a_retried_restore_with_its_key_replays_the_first_answer(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    created = await trashed(client, account)
    url = f"{trash_url(account)}/{created['id']}/restore"
    headers = {**account.headers, "Idempotency-Key": "restore-1"}

    first = await client.post(url, headers=headers)
    # Trashed again since: the retry must not restore it a second time.
    assert (
        await client.delete(f"{account.tasks_url}/{created['id']}", headers=account.headers)
    ).status_code == 204
    retry = await client.post(url, headers=headers)

    assert first.status_code == retry.status_code == 200
    assert retry.headers[REPLAYED] == "true"
    assert retry.content == first.content
    assert retry.headers["ETag"] == first.headers["ETag"]
    assert await is_trashed(engine, created["id"])


async def test_delete_from_the_trash_is_for_good(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    created = await trashed(client, account)
    url = f"{trash_url(account)}/{created['id']}"

    response = await client.delete(url, headers=account.headers)

    assert response.status_code == 204
    assert response.content == b""
    assert await task_row(engine, created["id"]) is None
    again = await client.delete(url, headers=account.headers)
    assert again.status_code == 404
    assert again.json() == NOT_FOUND


async def test_delete_from_the_trash_honours_if_match_and_keys(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    created = await trashed(client, account)
    url = f"{trash_url(account)}/{created['id']}"

    stale = await client.delete(url, headers={**account.headers, "If-Match": etag(1)})
    assert stale.status_code == 412
    assert await is_trashed(engine, created["id"])

    headers = {**account.headers, "If-Match": etag(2), "Idempotency-Key": "purge-1"}
    first = await client.delete(url, headers=headers)
    retry = await client.delete(url, headers=headers)
    assert first.status_code == retry.status_code == 204
    assert REPLAYED not in first.headers
    assert retry.headers[REPLAYED] == "true"
    assert await task_row(engine, created["id"]) is None


async def test_a_trashed_id_stays_taken(client: httpx.AsyncClient, account: Account) -> None:
    created = await trashed(client, account)

    response = await client.post(
        account.tasks_url, json={"id": created["id"], "title": "again"}, headers=account.headers
    )

    assert response.status_code == 409
    assert response.json()["code"] == "task_exists"


async def test_emptying_the_trash_deletes_only_the_trashed_tasks(
    client: httpx.AsyncClient, account: Account, other_account: Account, engine: AsyncEngine
) -> None:
    for n in range(3):
        await trashed(client, account, f"t{n}")
    live = await create_task(client, account, "live")
    theirs = await trashed(client, other_account, "theirs")

    response = await client.delete(trash_url(account), headers=account.headers)

    assert response.status_code == 204
    assert (await client.get(trash_url(account), headers=account.headers)).json() == []
    assert await task_row(engine, live["id"]) is not None
    assert await is_trashed(engine, theirs["id"])
    assert await trashed_count(engine) == 1
    # An empty trash empties again.
    assert (await client.delete(trash_url(account), headers=account.headers)).status_code == 204


async def test_a_retried_empty_with_its_key_replays_and_purges_nothing_new(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    await trashed(client, account, "first")
    headers = {**account.headers, "Idempotency-Key": "empty-1"}
    first = await client.delete(trash_url(account), headers=headers)
    later = await trashed(client, account, "later")

    retry = await client.delete(trash_url(account), headers=headers)

    assert first.status_code == retry.status_code == 204
    assert retry.headers[REPLAYED] == "true"
    assert await is_trashed(engine, later["id"])


async def test_the_running_service_purges_trash_past_its_retention(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine, database_url: str
) -> None:
    old = await trashed(client, account, "old")
    recent = await trashed(client, account, "recent")
    live = await create_task(client, account, "live")
    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE tasks SET deleted_at = now() - interval '2 days' WHERE id = :id"),
            {"id": uuid.UUID(old["id"])},
        )
    settings = make_settings(
        database_url, trash_retention_days=1, retention_purge_interval_seconds=0.05
    )

    async with LifespanManager(create_app(settings)), asyncio.timeout(30):
        while await task_row(engine, old["id"]) is not None:  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    assert await is_trashed(engine, recent["id"])
    assert await task_row(engine, live["id"]) is not None
    assert await task_count(engine) == 1


async def test_trash_retention_must_be_positive_and_defaults_to_30_days() -> None:
    # TRASH_RETENTION_DAYS must be positive: zero would purge what a user just deleted.
    with pytest.raises(ValueError, match="trash_retention_days"):
        make_settings("postgresql://unused/unused", trash_retention_days=0)
    assert timedelta(days=make_settings("postgresql://u/u").trash_retention_days) == timedelta(
        days=30
    )
