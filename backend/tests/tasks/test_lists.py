"""Lists (issue 17): every user's default list, the list routes, tasks in lists, and what
deleting a list does to its tasks."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.accounts import Account
from tests.fixtures.tasks import REPLAYED, create_task, etag, is_trashed, task_row

pytestmark = pytest.mark.usefixtures("clean_tasks")

LIST_NOT_FOUND = {"detail": "List not found", "code": "list_not_found"}
LIST_FIELDS = {
    "id",
    "user_id",
    "name",
    "position",
    "is_default",
    "version",
    "created_at",
    "updated_at",
    "open_tasks",
    "completed_tasks",
}


def lists_url(account: Account) -> str:
    return f"/api/{account.id}/lists"


async def all_lists(client: httpx.AsyncClient, account: Account) -> list[dict[str, Any]]:
    response = await client.get(lists_url(account), headers=account.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body, list)
    return body


async def inbox(client: httpx.AsyncClient, account: Account) -> dict[str, Any]:
    [default] = [row for row in await all_lists(client, account) if row["is_default"]]
    return default


async def new_list(client: httpx.AsyncClient, account: Account, name: str = "Errands") -> dict:
    response = await client.post(lists_url(account), json={"name": name}, headers=account.headers)
    assert response.status_code == 201, response.text
    body = response.json()
    assert isinstance(body, dict)
    return body


async def list_row(engine: AsyncEngine, list_id: str) -> dict[str, Any] | None:
    async with engine.connect() as connection:
        row = (
            (
                await connection.execute(
                    text("SELECT * FROM lists WHERE id = :id"), {"id": uuid.UUID(list_id)}
                )
            )
            .mappings()
            .one_or_none()
        )
    return dict(row) if row is not None else None


async def test_every_account_has_its_inbox_from_sign_up(
    client: httpx.AsyncClient, account: Account
) -> None:
    [default] = await all_lists(client, account)
    assert set(default) == LIST_FIELDS
    assert default["name"] == "Inbox"
    assert default["is_default"] is True
    assert default["user_id"] == str(account.id)
    assert (default["open_tasks"], default["completed_tasks"]) == (0, 0)


async def test_create_list_answers_201_with_location_etag_and_a_place_after_the_others(
    client: httpx.AsyncClient, account: Account, other_account: Account, engine: AsyncEngine
) -> None:
    # Another user's tasks, and one of this user's, are no one's count in the new list.
    await create_task(client, other_account, "theirs")
    done = await create_task(client, other_account, "theirs, done")
    await client.patch(
        f"{other_account.tasks_url}/{done['id']}/complete", headers=other_account.headers
    )
    await create_task(client, account, "mine, in the Inbox")
    response = await client.post(
        lists_url(account), json={"name": "  Groceries  "}, headers=account.headers
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "Groceries"
    assert body["is_default"] is False
    assert body["version"] == 1
    assert (body["open_tasks"], body["completed_tasks"]) == (0, 0)
    assert response.headers["ETag"] == etag(1)
    assert response.headers["Location"].endswith(f"{lists_url(account)}/{body['id']}")
    default = await inbox(client, account)
    assert default["position"] < body["position"]
    row = await list_row(engine, body["id"])
    assert row is not None
    assert row["name"] == "Groceries"
    assert row["position"] == body["position"]
    # GET one, and the collection in position order.
    one = await client.get(f"{lists_url(account)}/{body['id']}", headers=account.headers)
    assert one.json() == body
    assert [row["id"] for row in await all_lists(client, account)] == [default["id"], body["id"]]


@pytest.mark.parametrize(
    "payload",
    [{}, {"name": ""}, {"name": "   "}, {"name": "x" * 101}, {"name": 5}, {"name": "a\nb"}],
)
async def test_a_bad_list_name_is_refused(
    client: httpx.AsyncClient, account: Account, payload: dict
) -> None:
    response = await client.post(lists_url(account), json=payload, headers=account.headers)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    assert len(await all_lists(client, account)) == 1


async def test_a_list_name_of_100_characters_is_accepted(
    client: httpx.AsyncClient, account: Account
) -> None:
    assert (await new_list(client, account, "x" * 100))["name"] == "x" * 100


async def test_a_chosen_list_id_is_kept_and_a_taken_one_refused(
    client: httpx.AsyncClient, account: Account, other_account: Account
) -> None:
    chosen = str(uuid.uuid4())
    response = await client.post(
        lists_url(account), json={"id": chosen, "name": "A"}, headers=account.headers
    )
    assert response.status_code == 201
    assert response.json()["id"] == chosen
    again = await client.post(
        lists_url(other_account), json={"id": chosen, "name": "B"}, headers=other_account.headers
    )
    assert again.status_code == 409
    assert again.json()["code"] == "list_exists"


async def test_tasks_go_to_the_default_list_or_the_one_named_and_the_counts_follow(
    client: httpx.AsyncClient, account: Account
) -> None:
    default = await inbox(client, account)
    errands = await new_list(client, account)
    plain = await create_task(client, account, "plain")
    assert plain["list_id"] == default["id"]
    placed = []
    for title in ("a", "b", "c"):
        response = await client.post(
            account.tasks_url,
            json={"title": title, "list_id": errands["id"]},
            headers=account.headers,
        )
        assert response.status_code == 201, response.text
        placed.append(response.json())
    assert all(task["list_id"] == errands["id"] for task in placed)
    # Appended in creation order.
    assert [task["position"] for task in placed] == sorted(task["position"] for task in placed)
    done = await client.patch(
        f"{account.tasks_url}/{placed[0]['id']}/complete", headers=account.headers
    )
    assert done.status_code == 200
    # Counts: live tasks only.
    await client.delete(f"{account.tasks_url}/{placed[1]['id']}", headers=account.headers)
    listed = {row["id"]: row for row in await all_lists(client, account)}
    assert (listed[errands["id"]]["open_tasks"], listed[errands["id"]]["completed_tasks"]) == (1, 1)
    assert (listed[default["id"]]["open_tasks"], listed[default["id"]]["completed_tasks"]) == (1, 0)
    # The task list filtered by list.
    response = await client.get(
        account.tasks_url, params={"list_id": errands["id"]}, headers=account.headers
    )
    assert response.status_code == 200
    assert {task["id"] for task in response.json()} == {placed[0]["id"], placed[2]["id"]}
    response = await client.get(
        account.tasks_url, params={"list_id": default["id"]}, headers=account.headers
    )
    assert [task["id"] for task in response.json()] == [plain["id"]]


async def test_no_one_reaches_another_users_list(
    client: httpx.AsyncClient, account: Account, other_account: Account, engine: AsyncEngine
) -> None:
    theirs = await new_list(client, other_account, "Private")
    url = f"{lists_url(account)}/{theirs['id']}"
    assert (await client.get(url, headers=account.headers)).json() == LIST_NOT_FOUND
    for method, path, body in [
        ("PATCH", "", {"name": "mine now"}),
        ("DELETE", "", None),
        ("POST", "/move", {}),
    ]:
        response = await client.request(method, url + path, json=body, headers=account.headers)
        assert response.status_code == 404, (method, response.text)
        assert response.json() == LIST_NOT_FOUND
    created = await client.post(
        account.tasks_url, json={"title": "x", "list_id": theirs["id"]}, headers=account.headers
    )
    assert created.status_code == 404
    assert created.json() == LIST_NOT_FOUND
    mine = await create_task(client, account, "mine")
    moved = await client.post(
        f"{account.tasks_url}/{mine['id']}/move",
        json={"list_id": theirs["id"]},
        headers=account.headers,
    )
    assert moved.status_code == 404
    assert moved.json() == LIST_NOT_FOUND
    row = await list_row(engine, theirs["id"])
    assert row is not None
    assert row["name"] == "Private"
    assert row["deleted_at"] is None
    assert (await task_row(engine, mine["id"]) or {})["list_id"] != uuid.UUID(theirs["id"])
    # The filter shows nothing of theirs, though their list holds a task: their list is no
    # list of this user's (404), as a missing one is.
    await create_task(client, other_account, "their task", list_id=theirs["id"])
    for list_id in (theirs["id"], str(uuid.uuid4())):
        for params in (
            {"list_id": list_id},
            {"list_id": list_id, "sort": "position"},
            {"list_id": list_id, "q": "!!"},  # a search with no word, which finds nothing
        ):
            listed = await client.get(account.tasks_url, params=params, headers=account.headers)
            assert listed.status_code == 404
            assert listed.json() == LIST_NOT_FOUND


async def test_rename_honours_if_match_and_idempotency_key(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    created = await new_list(client, account)
    url = f"{lists_url(account)}/{created['id']}"
    stale = await client.patch(
        url, json={"name": "B"}, headers={**account.headers, "If-Match": etag(7)}
    )
    assert stale.status_code == 412
    assert stale.json()["current"]["name"] == "Errands"
    headers = {**account.headers, "If-Match": etag(1), "Idempotency-Key": "rename-1"}
    first = await client.patch(url, json={"name": "Shopping"}, headers=headers)
    assert first.status_code == 200
    assert first.json()["name"] == "Shopping"
    assert first.headers["ETag"] == etag(2)
    again = await client.patch(url, json={"name": "Shopping"}, headers=headers)
    assert again.status_code == 200
    assert again.headers.get(REPLAYED) == "true"
    assert again.json() == first.json()
    row = await list_row(engine, created["id"])
    assert row is not None
    assert row["version"] == 2


async def test_the_default_list_cannot_be_deleted(
    client: httpx.AsyncClient, account: Account
) -> None:
    default = await inbox(client, account)
    response = await client.delete(f"{lists_url(account)}/{default['id']}", headers=account.headers)
    assert response.status_code == 409
    assert response.json()["code"] == "default_list_protected"
    assert (await inbox(client, account))["id"] == default["id"]


async def test_deleting_a_list_trashes_its_tasks_and_a_restore_goes_to_the_default_list(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    default = await inbox(client, account)
    errands = await new_list(client, account)
    inside = await create_task(client, account, "inside")
    moved = await client.post(
        f"{account.tasks_url}/{inside['id']}/move",
        json={"list_id": errands["id"]},
        headers=account.headers,
    )
    assert moved.status_code == 200
    assert moved.json()["list_id"] == errands["id"]
    outside = await create_task(client, account, "outside")
    url = f"{lists_url(account)}/{errands['id']}"
    stale = await client.delete(url, headers={**account.headers, "If-Match": etag(9)})
    assert stale.status_code == 412
    assert not await is_trashed(engine, inside["id"])

    response = await client.delete(url, headers={**account.headers, "If-Match": etag(1)})
    assert response.status_code == 204, response.text
    assert await is_trashed(engine, inside["id"])
    assert not await is_trashed(engine, outside["id"])
    assert (await client.get(url, headers=account.headers)).json() == LIST_NOT_FOUND
    assert [row["id"] for row in await all_lists(client, account)] == [default["id"]]
    row = await list_row(engine, errands["id"])
    assert row is not None
    assert row["deleted_at"] is not None
    assert row["position"] is None
    # Deleted twice: 404. A task cannot be created in it.
    assert (await client.delete(url, headers=account.headers)).status_code == 404
    created = await client.post(
        account.tasks_url, json={"title": "x", "list_id": errands["id"]}, headers=account.headers
    )
    assert created.status_code == 404

    restored = await client.post(
        f"/api/{account.id}/trash/{inside['id']}/restore", headers=account.headers
    )
    assert restored.status_code == 200, restored.text
    body = restored.json()
    assert body["list_id"] == default["id"]
    assert body["position"] > outside["position"]  # last in the default list


async def test_a_keyed_list_delete_replays(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    errands = await new_list(client, account)
    url = f"{lists_url(account)}/{errands['id']}"
    headers = {**account.headers, "Idempotency-Key": "delete-list-1"}
    first = await client.delete(url, headers=headers)
    assert first.status_code == 204
    again = await client.delete(url, headers=headers)
    assert again.status_code == 204
    assert again.headers.get(REPLAYED) == "true"


async def test_a_create_waiting_on_a_list_being_deleted_finds_it_gone(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    """The deletion's lock is held (as its transaction holds it) while a create into the list
    arrives: the create waits, then finds the list deleted, and no live task is left in it."""
    errands = await new_list(client, account)
    list_id = uuid.UUID(errands["id"])
    async with engine.connect() as connection:
        transaction = await connection.begin()
        await connection.execute(
            text("SELECT id FROM lists WHERE id = :id FOR UPDATE"), {"id": list_id}
        )
        create = asyncio.create_task(
            client.post(
                account.tasks_url,
                json={"title": "late", "list_id": errands["id"]},
                headers=account.headers,
            )
        )
        await asyncio.sleep(0.3)
        assert not create.done()  # waiting for the list's lock
        await connection.execute(
            text("UPDATE lists SET deleted_at = now() WHERE id = :id"), {"id": list_id}
        )
        await transaction.commit()
    created = await create
    assert created.status_code == 404, created.text
    assert created.json() == LIST_NOT_FOUND
    async with engine.connect() as connection:
        count = await connection.scalar(
            text("SELECT count(*) FROM tasks WHERE list_id = :id"), {"id": list_id}
        )
    assert count == 0


async def test_a_keyed_list_delete_retried_while_the_first_runs_is_told_the_key_is_in_use(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    errands = await new_list(client, account)
    url = f"{lists_url(account)}/{errands['id']}"
    headers = {**account.headers, "Idempotency-Key": "delete-list-racing"}
    async with engine.connect() as connection:
        transaction = await connection.begin()
        # Holds the list, so the first request waits inside its transaction, key claimed.
        await connection.execute(
            text("SELECT id FROM lists WHERE id = :id FOR UPDATE"),
            {"id": uuid.UUID(errands["id"])},
        )
        first = asyncio.create_task(client.delete(url, headers=headers))
        await asyncio.sleep(0.3)
        retry = await client.delete(url, headers=headers)
        assert retry.status_code == 409, retry.text
        assert retry.json()["code"] == "idempotency_key_in_use"
        assert "Retry-After" in retry.headers
        await transaction.rollback()
    assert (await first).status_code == 204
    replayed = await client.delete(url, headers=headers)
    assert replayed.status_code == 204
    assert replayed.headers.get(REPLAYED) == "true"


async def test_a_create_racing_the_deletion_of_its_list_is_trashed_or_refused(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    """Never a live task in a deleted list, whichever commits first."""
    for _ in range(10):
        errands = await new_list(client, account)
        create = client.post(
            account.tasks_url,
            json={"title": "racer", "list_id": errands["id"]},
            headers=account.headers,
        )
        delete = client.delete(f"{lists_url(account)}/{errands['id']}", headers=account.headers)
        created, deleted = await asyncio.gather(create, delete)
        assert deleted.status_code == 204
        assert created.status_code in (201, 404), created.text
        async with engine.connect() as connection:
            live = await connection.scalar(
                text("SELECT count(*) FROM tasks WHERE list_id = :id AND deleted_at IS NULL"),
                {"id": uuid.UUID(errands["id"])},
            )
        assert live == 0


async def test_filtering_by_an_empty_list_is_an_empty_page_and_by_a_deleted_one_404(
    client: httpx.AsyncClient, account: Account
) -> None:
    errands = await new_list(client, account)
    params = {"list_id": errands["id"], "sort": "position"}
    listed = await client.get(account.tasks_url, params=params, headers=account.headers)
    assert (listed.status_code, listed.json()) == (200, [])
    await create_task(client, account, "errand", list_id=errands["id"])
    deleted = await client.delete(f"{lists_url(account)}/{errands['id']}", headers=account.headers)
    assert deleted.status_code == 204
    listed = await client.get(account.tasks_url, params=params, headers=account.headers)
    assert (listed.status_code, listed.json()) == (404, LIST_NOT_FOUND)


async def test_a_lists_counts_are_never_answered_with_304(
    client: httpx.AsyncClient, account: Account
) -> None:
    # Its ETag is its version, which its tasks do not change; the counts they change must
    # still reach a client that revalidates.
    errands = await new_list(client, account)
    url = f"{lists_url(account)}/{errands['id']}"
    first = await client.get(url, headers=account.headers)
    assert first.headers["ETag"] == etag(1)
    await create_task(client, account, "errand", list_id=errands["id"])
    again = await client.get(url, headers={**account.headers, "If-None-Match": etag(1)})
    assert again.status_code == 200
    assert again.headers["ETag"] == etag(1)
    assert (again.json()["open_tasks"], again.json()["completed_tasks"]) == (1, 0)
