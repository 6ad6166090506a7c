"""Versions, ETags and preconditions (issue 15): every task carries a version that moves once per
real change; GET answers If-None-Match with 304; PUT, PATCH, DELETE and the toggle refuse a
stale If-Match with 412 and the current task, and REQUIRE_IF_MATCH makes the header mandatory."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.accounts import Account
from tests.fixtures.tasks import (
    NOT_FOUND,
    assert_body_matches_row,
    assert_task_shape,
    create_task,
    etag,
    task_count,
    task_row,
)

# Every test here writes tasks for the package's shared accounts (see conftest.py).
pytestmark = pytest.mark.usefixtures("clean_tasks")

VERSION_CONFLICT_DETAIL = (
    "The task changed since the version in If-Match; its current state is in current"
)
PRECONDITION_REQUIRED = {
    "detail": "This write needs an If-Match header with the version it changes.",
    "code": "precondition_required",
}
IF_MATCH_MESSAGE = 'The If-Match header must be * or a list of entity tags such as "3".'
IF_NONE_MATCH_MESSAGE = 'The If-None-Match header must be * or a list of entity tags such as "3".'


def invalid_header(name: str, message: str) -> dict[str, Any]:
    return {
        "detail": message,
        "code": "validation_error",
        "errors": [{"loc": ["header", name], "msg": message, "type": "validation_error"}],
    }


@dataclass(frozen=True)
class Write:
    """One of the writes to an existing task that take If-Match."""

    name: str
    method: str
    suffix: str
    json: dict[str, Any] | None
    status: int

    def url(self, account: Account, task_id: str) -> str:
        return f"{account.tasks_url}/{task_id}{self.suffix}"

    async def send(
        self,
        client: httpx.AsyncClient,
        account: Account,
        task_id: str,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        return await client.request(
            self.method,
            self.url(account, task_id),
            json=self.json,
            headers={**account.headers, **(headers or {})},
        )


WRITES = [
    Write("put", "PUT", "", {"title": "Replaced"}, 200),
    Write("patch", "PATCH", "", {"title": "Patched"}, 200),
    Write("toggle", "PATCH", "/complete", None, 200),
    Write("delete", "DELETE", "", None, 204),
]
each_write = pytest.mark.parametrize("write", WRITES, ids=[write.name for write in WRITES])


async def assert_applied(
    engine: AsyncEngine, write: Write, response: httpx.Response, task_id: str, version: int
) -> None:
    """``write`` succeeded on the task that was at ``version``: the answer, its ETag and the
    row all say so."""
    assert response.status_code == write.status, response.text
    row = await task_row(engine, task_id)
    if write.status == 204:
        assert response.content == b""
        assert "etag" not in response.headers
        assert row is not None
        assert row["deleted_at"] is not None  # in the trash
        return
    body = response.json()
    assert_task_shape(body)
    assert body["version"] == version + 1
    assert response.headers["etag"] == etag(version + 1)
    assert_body_matches_row(body, row)


async def task_at_version_2(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> tuple[str, dict[str, Any] | None]:
    """A task changed once since it was created (version 2), and its row."""
    created = await create_task(client, account, "v1", description="first")
    changed = await client.patch(
        f"{account.tasks_url}/{created['id']}", json={"title": "v2"}, headers=account.headers
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["version"] == 2
    return created["id"], await task_row(engine, created["id"])


# --- versions ------------------------------------------------------------------------------------


async def test_a_new_task_is_at_version_1_with_its_etag(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    response = await client.post(
        account.tasks_url, json={"title": "Buy milk"}, headers=account.headers
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert_task_shape(body)
    assert body["version"] == 1
    assert response.headers["etag"] == '"1"'
    assert_body_matches_row(body, await task_row(engine, body["id"]))


@pytest.mark.parametrize(
    ("method", "suffix", "payload"),
    [
        ("PUT", "", {"title": "Replaced"}),
        ("PUT", "", {"title": "Buy milk", "description": "changed"}),
        ("PATCH", "", {"title": "Patched"}),
        ("PATCH", "", {"description": "added"}),
        ("PATCH", "", {"completed": True}),
        ("PATCH", "/complete", None),
    ],
    ids=[
        "put-title",
        "put-description",
        "patch-title",
        "patch-description",
        "patch-done",
        "toggle",
    ],
)
async def test_a_change_moves_the_version_by_one_and_the_etag_with_it(
    client: httpx.AsyncClient,
    account: Account,
    engine: AsyncEngine,
    method: str,
    suffix: str,
    payload: dict[str, Any] | None,
) -> None:
    created = await create_task(client, account, "Buy milk")

    response = await client.request(
        method,
        f"{account.tasks_url}/{created['id']}{suffix}",
        json=payload,
        headers=account.headers,
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["version"] == 2
    assert response.headers["etag"] == '"2"'
    assert_body_matches_row(body, await task_row(engine, created["id"]))


async def test_successive_changes_count_the_version_up_one_at_a_time(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    created = await create_task(client, account, "v1")
    url = f"{account.tasks_url}/{created['id']}"
    changes = [
        ("PUT", url, {"title": "v2"}),
        ("PATCH", url, {"description": "d"}),
        ("PATCH", f"{url}/complete", None),
        ("PATCH", url, {"completed": False}),
        ("PUT", url, {"title": "v6", "description": None}),
    ]

    versions = []
    for method, target, payload in changes:
        response = await client.request(method, target, json=payload, headers=account.headers)
        assert response.status_code == 200, response.text
        versions.append((response.json()["version"], response.headers["etag"]))

    assert versions == [(n, f'"{n}"') for n in range(2, 7)]
    row = await task_row(engine, created["id"])
    assert row is not None
    assert row["version"] == 6


async def test_get_carries_the_version_as_etag(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    task_id, row = await task_at_version_2(client, account, engine)

    response = await client.get(f"{account.tasks_url}/{task_id}", headers=account.headers)

    assert response.status_code == 200, response.text
    assert response.json()["version"] == 2
    assert response.headers["etag"] == '"2"'
    assert_body_matches_row(response.json(), row)


@pytest.mark.parametrize(
    ("method", "payload"),
    [
        ("PATCH", {"title": "Buy milk", "description": "semi-skimmed"}),
        ("PATCH", {"title": "Buy milk"}),
        ("PATCH", {"description": "semi-skimmed"}),
        ("PATCH", {"completed": False}),
        ("PUT", {"title": "Buy milk", "description": "semi-skimmed"}),
        ("PUT", {"title": "Buy milk"}),  # description omitted: kept
        ("PATCH", {}),
    ],
    ids=[
        "patch-both",
        "patch-title",
        "patch-description",
        "patch-completed",
        "put-both",
        "put-title",
        "patch-empty",
    ],
)
async def test_a_write_that_changes_nothing_keeps_the_version(
    client: httpx.AsyncClient,
    account: Account,
    engine: AsyncEngine,
    method: str,
    payload: dict[str, Any],
) -> None:
    created = await create_task(client, account, "Buy milk", description="semi-skimmed")
    before = await task_row(engine, created["id"])

    response = await client.request(
        method, f"{account.tasks_url}/{created['id']}", json=payload, headers=account.headers
    )

    assert response.status_code == 200, response.text
    assert response.json() == created
    assert response.headers["etag"] == '"1"'
    assert await task_row(engine, created["id"]) == before


async def test_completing_a_completed_task_again_keeps_the_version(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    created = await create_task(client, account)
    url = f"{account.tasks_url}/{created['id']}"
    completed = await client.patch(url, json={"completed": True}, headers=account.headers)
    assert completed.json()["version"] == 2
    before = await task_row(engine, created["id"])

    response = await client.patch(url, json={"completed": True}, headers=account.headers)

    assert response.status_code == 200, response.text
    assert response.json() == completed.json()
    assert response.headers["etag"] == '"2"'
    assert await task_row(engine, created["id"]) == before


async def test_a_change_made_outside_the_api_moves_the_version_too(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    # The version is the database's (a trigger): an operator's UPDATE cannot slip past If-Match.
    created = await create_task(client, account)
    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE tasks SET title = 'by hand' WHERE id = :id"),
            {"id": uuid.UUID(created["id"])},
        )

    response = await client.put(
        f"{account.tasks_url}/{created['id']}",
        json={"title": "from the client"},
        headers={**account.headers, "If-Match": '"1"'},
    )

    assert response.status_code == 412, response.text
    assert response.json()["current"]["title"] == "by hand"
    assert response.json()["current"]["version"] == 2
    row = await task_row(engine, created["id"])
    assert row is not None
    assert (row["title"], row["version"]) == ("by hand", 2)


# --- If-None-Match on GET of one task ------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    ['"2"', "*", 'W/"2"', '"7", "2"', ' "9" ,W/"2" '],
    ids=["strong", "star", "weak", "list", "list-with-spaces"],
)
async def test_get_with_a_matching_if_none_match_answers_304_without_a_body(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine, header: str
) -> None:
    task_id, row = await task_at_version_2(client, account, engine)

    response = await client.get(
        f"{account.tasks_url}/{task_id}", headers={**account.headers, "If-None-Match": header}
    )

    assert response.status_code == 304, response.text
    assert response.content == b""
    assert response.headers["etag"] == '"2"'
    assert await task_row(engine, task_id) == row


@pytest.mark.parametrize("header", ['"1"', 'W/"1"', '"3", "20"', '"abc"'])
async def test_get_with_an_if_none_match_of_another_version_answers_200(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine, header: str
) -> None:
    task_id, row = await task_at_version_2(client, account, engine)

    response = await client.get(
        f"{account.tasks_url}/{task_id}", headers={**account.headers, "If-None-Match": header}
    )

    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"2"'
    assert_body_matches_row(response.json(), row)


@pytest.mark.parametrize("header", ["2", '"2', "W/2", '"2" "3"', "**", ""])
async def test_get_with_a_malformed_if_none_match_answers_422(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine, header: str
) -> None:
    task_id, _ = await task_at_version_2(client, account, engine)

    response = await client.get(
        f"{account.tasks_url}/{task_id}", headers={**account.headers, "If-None-Match": header}
    )

    assert response.status_code == 422, response.text
    assert response.json() == invalid_header("If-None-Match", IF_NONE_MATCH_MESSAGE)
    assert "etag" not in response.headers


async def test_if_none_match_on_another_users_task_is_404_not_304(
    client: httpx.AsyncClient, account: Account, other_account: Account
) -> None:
    theirs = await create_task(client, other_account)

    response = await client.get(
        f"{account.tasks_url}/{theirs['id']}", headers={**account.headers, "If-None-Match": "*"}
    )

    assert response.status_code == 404, response.text
    assert response.json() == NOT_FOUND
    assert "etag" not in response.headers


async def test_if_none_match_on_a_missing_task_is_404(
    client: httpx.AsyncClient, account: Account
) -> None:
    response = await client.get(
        f"{account.tasks_url}/{uuid.uuid4()}", headers={**account.headers, "If-None-Match": "*"}
    )

    assert response.status_code == 404, response.text
    assert response.json() == NOT_FOUND


async def test_the_etag_of_a_get_stops_matching_once_the_task_changes(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    created = await create_task(client, account)
    url = f"{account.tasks_url}/{created['id']}"
    first = await client.get(url, headers=account.headers)
    await client.patch(f"{url}/complete", headers=account.headers)

    response = await client.get(
        url, headers={**account.headers, "If-None-Match": first.headers["etag"]}
    )

    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"2"'
    assert response.json()["completed"] is True
    assert_body_matches_row(response.json(), await task_row(engine, created["id"]))


# --- the list's weak ETag ------------------------------------------------------------------------


async def list_page(
    client: httpx.AsyncClient, account: Account, url: str | None = None, **headers: str
) -> httpx.Response:
    return await client.get(url or account.tasks_url, headers={**account.headers, **headers})


async def test_a_list_page_carries_a_weak_etag(client: httpx.AsyncClient, account: Account) -> None:
    await create_task(client, account)

    response = await list_page(client, account)

    assert response.status_code == 200, response.text
    assert response.headers["etag"].startswith('W/"')
    assert response.headers["etag"].endswith('"')
    assert len(response.json()) == 1


async def test_a_list_with_its_own_etag_answers_304_without_a_body(
    client: httpx.AsyncClient, account: Account
) -> None:
    await create_task(client, account)
    first = await list_page(client, account)

    response = await list_page(client, account, **{"If-None-Match": first.headers["etag"]})

    assert response.status_code == 304, response.text
    assert response.content == b""
    assert response.headers["etag"] == first.headers["etag"]


async def test_a_list_etag_sent_as_a_strong_tag_still_matches(
    client: httpx.AsyncClient, account: Account
) -> None:
    # If-None-Match compares weakly: W/"x" and "x" name the same content.
    await create_task(client, account)
    first = await list_page(client, account)
    strong = first.headers["etag"].removeprefix("W/")

    response = await list_page(client, account, **{"If-None-Match": strong})

    assert response.status_code == 304, response.text


@pytest.mark.parametrize("change", ["create", "toggle", "patch", "delete"])
async def test_a_list_etag_changes_with_the_content_and_the_old_one_answers_200(
    client: httpx.AsyncClient, account: Account, change: str
) -> None:
    created = await create_task(client, account, "first")
    url = f"{account.tasks_url}/{created['id']}"
    first = await list_page(client, account)
    if change == "create":
        await create_task(client, account, "second")
    elif change == "toggle":
        await client.patch(f"{url}/complete", headers=account.headers)
    elif change == "patch":
        await client.patch(url, json={"description": "more"}, headers=account.headers)
    else:
        await client.delete(url, headers=account.headers)

    response = await list_page(client, account, **{"If-None-Match": first.headers["etag"]})

    assert response.status_code == 200, response.text
    assert response.headers["etag"] != first.headers["etag"]
    assert response.headers["etag"].startswith('W/"')
    expected_count = {"create": 2, "delete": 0}.get(change, 1)
    assert len(response.json()) == expected_count


async def test_different_pages_and_limits_have_different_etags(
    client: httpx.AsyncClient, account: Account
) -> None:
    for n in range(4):
        await create_task(client, account, f"task {n}")

    whole = await list_page(client, account)
    two = await list_page(client, account, f"{account.tasks_url}?limit=2")
    three = await list_page(client, account, f"{account.tasks_url}?limit=3")
    next_url = two.links["next"]["url"]
    second_page = await list_page(client, account, next_url)
    completed_only = await list_page(client, account, f"{account.tasks_url}?completed=true")

    responses = [whole, two, three, second_page, completed_only]
    assert [r.status_code for r in responses] == [200] * 5
    assert [len(r.json()) for r in responses] == [4, 2, 3, 2, 0]
    etags = [r.headers["etag"] for r in responses]
    assert len(set(etags)) == len(etags)
    # Each page's tag matches only that page.
    again = await list_page(client, account, next_url, **{"If-None-Match": etags[1]})
    assert again.status_code == 200


async def test_a_list_with_a_malformed_if_none_match_answers_422(
    client: httpx.AsyncClient, account: Account
) -> None:
    response = await list_page(client, account, **{"If-None-Match": "abc"})

    assert response.status_code == 422, response.text
    assert response.json() == invalid_header("If-None-Match", IF_NONE_MATCH_MESSAGE)


# --- If-Match on PUT, PATCH, DELETE and the toggle -----------------------------------------------


@each_write
@pytest.mark.parametrize(
    "header",
    ['"2"', "*", '"1", "2"', 'W/"1", "2"', ' "2" '],
    ids=["exact", "star", "list", "weak-and-strong", "spaces"],
)
async def test_a_write_with_a_matching_if_match_is_applied(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine, write: Write, header: str
) -> None:
    task_id, _ = await task_at_version_2(client, account, engine)

    response = await write.send(client, account, task_id, {"If-Match": header})

    await assert_applied(engine, write, response, task_id, version=2)


@each_write
@pytest.mark.parametrize(
    "header",
    ['"1"', '"3"', '"1", "7"', 'W/"2"', '"abc"', '"99999999999999999999"', '""'],
    ids=["older", "newer", "list", "weak", "not-a-number", "huge", "empty-tag"],
)
async def test_a_write_with_a_stale_if_match_answers_412_with_the_current_task(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine, write: Write, header: str
) -> None:
    task_id, before = await task_at_version_2(client, account, engine)

    response = await write.send(client, account, task_id, {"If-Match": header})

    assert response.status_code == 412, response.text
    current = await client.get(f"{account.tasks_url}/{task_id}", headers=account.headers)
    assert response.json() == {
        "detail": VERSION_CONFLICT_DETAIL,
        "code": "version_conflict",
        "current": current.json(),
    }
    assert response.headers["etag"] == '"2"'
    assert await task_row(engine, task_id) == before
    assert_body_matches_row(response.json()["current"], before)


async def test_if_match_compares_tags_character_by_character(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    # RFC 9110 8.8.3.2: strong comparison is of the opaque tags, so "01" is not the ETag "1".
    created = await create_task(client, account)
    before = await task_row(engine, created["id"])

    response = await client.patch(
        f"{account.tasks_url}/{created['id']}",
        json={"title": "changed"},
        headers={**account.headers, "If-Match": '"01"'},
    )

    assert response.status_code == 412, response.text
    assert response.json()["code"] == "version_conflict"
    assert await task_row(engine, created["id"]) == before


async def test_an_empty_patch_with_a_stale_if_match_answers_412(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    task_id, before = await task_at_version_2(client, account, engine)

    response = await client.patch(
        f"{account.tasks_url}/{task_id}", json={}, headers={**account.headers, "If-Match": '"1"'}
    )

    assert response.status_code == 412, response.text
    assert response.json()["code"] == "version_conflict"
    assert_body_matches_row(response.json()["current"], before)
    assert response.headers["etag"] == '"2"'
    assert await task_row(engine, task_id) == before


async def test_an_empty_patch_with_a_matching_if_match_answers_the_task(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    task_id, before = await task_at_version_2(client, account, engine)

    response = await client.patch(
        f"{account.tasks_url}/{task_id}", json={}, headers={**account.headers, "If-Match": '"2"'}
    )

    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"2"'
    assert_body_matches_row(response.json(), before)
    assert await task_row(engine, task_id) == before


@each_write
@pytest.mark.parametrize("header", ["2", '"2', "W/2", '"2" "3"', "**", ""])
async def test_a_write_with_a_malformed_if_match_answers_422_and_changes_nothing(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine, write: Write, header: str
) -> None:
    task_id, before = await task_at_version_2(client, account, engine)

    response = await write.send(client, account, task_id, {"If-Match": header})

    assert response.status_code == 422, response.text
    assert response.json() == invalid_header("If-Match", IF_MATCH_MESSAGE)
    assert await task_row(engine, task_id) == before


@each_write
@pytest.mark.parametrize("header", ["*", '"1"', '"2"'])
async def test_if_match_on_a_missing_task_answers_404(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine, write: Write, header: str
) -> None:
    response = await write.send(client, account, str(uuid.uuid4()), {"If-Match": header})

    assert response.status_code == 404, response.text
    assert response.json() == NOT_FOUND
    assert "etag" not in response.headers
    assert await task_count(engine) == 0


@each_write
@pytest.mark.parametrize("header", ["*", '"1"', '"2"'], ids=["star", "current", "stale"])
async def test_if_match_on_another_users_task_answers_404_not_412(
    client: httpx.AsyncClient,
    account: Account,
    other_account: Account,
    engine: AsyncEngine,
    write: Write,
    header: str,
) -> None:
    theirs = await create_task(client, other_account, "theirs")
    await client.patch(
        f"{other_account.tasks_url}/{theirs['id']}",
        json={"title": "v2"},
        headers=other_account.headers,
    )
    before = await task_row(engine, theirs["id"])

    response = await write.send(client, account, theirs["id"], {"If-Match": header})

    assert response.status_code == 404, response.text
    assert response.json() == NOT_FOUND
    assert "etag" not in response.headers
    assert await task_row(engine, theirs["id"]) == before


@each_write
async def test_a_write_conditioned_on_the_answer_of_the_previous_one_is_applied(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine, write: Write
) -> None:
    # The ETag a write answers is the If-Match of the next: the loop an editor runs.
    created = await create_task(client, account, "v1")
    patched = await client.patch(
        f"{account.tasks_url}/{created['id']}",
        json={"title": "v2"},
        headers={**account.headers, "If-Match": etag(created["version"])},
    )
    assert patched.status_code == 200, patched.text

    response = await write.send(
        client, account, created["id"], {"If-Match": patched.headers["etag"]}
    )

    await assert_applied(engine, write, response, created["id"], version=2)


# --- REQUIRE_IF_MATCH ----------------------------------------------------------------------------


@each_write
async def test_with_if_match_required_a_write_without_it_answers_428_and_changes_nothing(
    client: httpx.AsyncClient,
    if_match_required_client: httpx.AsyncClient,
    account: Account,
    engine: AsyncEngine,
    write: Write,
) -> None:
    task_id, before = await task_at_version_2(client, account, engine)

    response = await write.send(if_match_required_client, account, task_id)

    assert response.status_code == 428, response.text
    assert response.json() == PRECONDITION_REQUIRED
    assert await task_row(engine, task_id) == before


@each_write
@pytest.mark.parametrize("header", ['"2"', "*"])
async def test_with_if_match_required_a_write_with_it_is_applied(
    client: httpx.AsyncClient,
    if_match_required_client: httpx.AsyncClient,
    account: Account,
    engine: AsyncEngine,
    write: Write,
    header: str,
) -> None:
    task_id, _ = await task_at_version_2(client, account, engine)

    response = await write.send(if_match_required_client, account, task_id, {"If-Match": header})

    await assert_applied(engine, write, response, task_id, version=2)


@each_write
async def test_with_if_match_required_a_stale_one_still_answers_412(
    client: httpx.AsyncClient,
    if_match_required_client: httpx.AsyncClient,
    account: Account,
    engine: AsyncEngine,
    write: Write,
) -> None:
    task_id, before = await task_at_version_2(client, account, engine)

    response = await write.send(if_match_required_client, account, task_id, {"If-Match": '"1"'})

    assert response.status_code == 412, response.text
    assert response.json()["code"] == "version_conflict"
    assert await task_row(engine, task_id) == before


async def test_with_if_match_required_a_create_needs_none(
    if_match_required_client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    response = await if_match_required_client.post(
        account.tasks_url, json={"title": "new"}, headers=account.headers
    )

    assert response.status_code == 201, response.text
    assert response.headers["etag"] == '"1"'
    assert_body_matches_row(response.json(), await task_row(engine, response.json()["id"]))


async def test_with_if_match_required_a_write_to_another_users_task_is_not_a_428_probe(
    client: httpx.AsyncClient,
    if_match_required_client: httpx.AsyncClient,
    account: Account,
    other_account: Account,
    engine: AsyncEngine,
) -> None:
    # 428 is decided before the task is looked up, so it says nothing about whose it is: the
    # answer is the same for a missing task and for another user's.
    theirs = await create_task(client, other_account)
    before = await task_row(engine, theirs["id"])

    foreign = await if_match_required_client.delete(
        f"{account.tasks_url}/{theirs['id']}", headers=account.headers
    )
    missing = await if_match_required_client.delete(
        f"{account.tasks_url}/{uuid.uuid4()}", headers=account.headers
    )

    assert (foreign.status_code, foreign.json()) == (missing.status_code, missing.json())
    assert await task_row(engine, theirs["id"]) == before


async def test_by_default_a_write_without_if_match_is_applied(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    task_id, _ = await task_at_version_2(client, account, engine)

    response = await client.put(
        f"{account.tasks_url}/{task_id}", json={"title": "v3"}, headers=account.headers
    )

    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"3"'
    assert_body_matches_row(response.json(), await task_row(engine, task_id))
