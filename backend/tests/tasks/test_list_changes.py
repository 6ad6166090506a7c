"""Lists in the change feed (issue 17): only for a client that asks (include=lists), on the
same numbering as the tasks, so a cursor moves past list changes either way."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fixtures.accounts import Account
from tests.fixtures.tasks import create_task
from tests.tasks.test_lists import inbox, lists_url, new_list

pytestmark = pytest.mark.usefixtures("clean_tasks")


async def changes(client: httpx.AsyncClient, account: Account, **params: str) -> dict[str, Any]:
    response = await client.get(
        f"/api/{account.id}/changes", params=params, headers=account.headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _named(change: dict[str, Any]) -> tuple[str, str]:
    """(op, the id of the task or list it is about)."""
    about = (
        change.get("list")
        or change.get("task")
        or {"id": change.get("task_id") or change["list_id"]}
    )
    return change["op"], about["id"]


async def test_a_full_sync_with_lists_holds_every_live_list_and_task_in_number_order(
    client: httpx.AsyncClient, account: Account
) -> None:
    default = await inbox(client, account)
    errands = await new_list(client, account)
    task = await create_task(client, account, "t", list_id=errands["id"])
    body = await changes(client, account, include="lists")
    ops = [
        (change["op"], change.get("list", change.get("task"))["id"]) for change in body["changes"]
    ]
    assert ("list_upsert", default["id"]) in ops
    assert ops[-2:] == [("list_upsert", errands["id"]), ("upsert", task["id"])]
    listed = next(
        c["list"]
        for c in body["changes"]
        if c["op"] == "list_upsert" and c["list"]["id"] == errands["id"]
    )
    assert listed["open_tasks"] == 1
    # Without include, the same snapshot has the task only.
    plain = await changes(client, account)
    assert [change["op"] for change in plain["changes"]] == ["upsert"]
    assert plain["cursor"] == body["cursor"]


async def test_list_changes_follow_a_cursor_and_a_cursor_moves_past_them_without_include(
    client: httpx.AsyncClient, account: Account
) -> None:
    cursor = (await changes(client, account))["cursor"]
    errands = await new_list(client, account)
    renamed = await client.patch(
        f"{lists_url(account)}/{errands['id']}", json={"name": "Shop"}, headers=account.headers
    )
    assert renamed.status_code == 200
    with_lists = await changes(client, account, since=cursor, include="lists")
    assert with_lists["changes"] == [{"op": "list_upsert", "list": renamed.json()}]
    without = await changes(client, account, since=cursor)
    assert without["changes"] == []
    # The cursor after a list change is valid for a client that never asked for lists.
    assert without["cursor"] == with_lists["cursor"]
    again = await changes(client, account, since=without["cursor"])
    assert again["changes"] == []

    deleted = await client.delete(f"{lists_url(account)}/{errands['id']}", headers=account.headers)
    assert deleted.status_code == 204
    after = await changes(client, account, since=with_lists["cursor"], include="lists")
    assert after["changes"] == [{"op": "list_delete", "list_id": errands["id"]}]


async def test_pages_of_lists_and_tasks_together_miss_nothing(
    client: httpx.AsyncClient, account: Account
) -> None:
    expected = []
    for number in range(7):
        expected.append(("list_upsert", (await new_list(client, account, f"l{number}"))["id"]))
        expected.append(("upsert", (await create_task(client, account, f"t{number}"))["id"]))
    cursor = None
    seen: list[tuple[str, str]] = []
    while True:
        params = {"include": "lists", "limit": "3"} | ({"since": cursor} if cursor else {})
        body = await changes(client, account, **params)
        seen += [_named(change) for change in body["changes"]]
        cursor = body["cursor"]
        if not body["has_more"]:
            break
    assert [item for item in seen if item in expected] == expected


async def test_an_unknown_include_is_refused(client: httpx.AsyncClient, account: Account) -> None:
    response = await client.get(
        f"/api/{account.id}/changes", params={"include": "tags"}, headers=account.headers
    )
    assert response.status_code == 422
