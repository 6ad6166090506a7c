"""Idempotency-Key on every write (issue 15): the first request with a key runs and stores its
answer with the write, in one transaction; a retry with the same key and request replays it
(`Idempotent-Replayed: true`) without touching the task; the same key on another request is
refused; a retry while the first is running answers 409 with Retry-After. Also the client-chosen
task ids an offline client creates with."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.idempotency.keys import IdempotentRequest
from app.main import create_app
from tests.fixtures.accounts import Account
from tests.fixtures.app import make_settings
from tests.fixtures.tasks import (
    NOT_FOUND,
    REPLAYED,
    assert_body_matches_row,
    assert_task_shape,
    create_task,
    etag,
    holding_key_lock,
    is_trashed,
    key_count,
    key_row,
    parse_time,
    task_count,
    task_row,
    user_task_count,
)

# Every test here writes tasks for the package's shared accounts (see conftest.py).
pytestmark = pytest.mark.usefixtures("clean_tasks")

TIMEOUT_SECONDS = 30
KEY = "3f1c2a9e-key"
KEY_MESSAGE = "The Idempotency-Key header must be 1 to 255 printable ASCII characters."
REUSED_MESSAGE = (
    "This Idempotency-Key was already used for a different request; "
    "use a new key for a new request."
)
IN_USE = {
    "detail": "A request with this Idempotency-Key is still being processed; "
    "retry after Retry-After seconds.",
    "code": "idempotency_key_in_use",
}
TASK_EXISTS = {
    "detail": "A task with this id already exists; choose another id",
    "code": "task_exists",
}
INVALID_KEY = {
    "detail": KEY_MESSAGE,
    "code": "validation_error",
    "errors": [
        {"loc": ["header", "Idempotency-Key"], "msg": KEY_MESSAGE, "type": "validation_error"}
    ],
}
KEY_REUSED = {
    "detail": REUSED_MESSAGE,
    "code": "idempotency_key_reused",
    "errors": [
        {
            "loc": ["header", "Idempotency-Key"],
            "msg": REUSED_MESSAGE,
            "type": "idempotency_key_reused",
        }
    ],
}


@dataclass(frozen=True)
class Write:
    """One of the five write routes, sent with a key."""

    name: str
    method: str
    suffix: str
    json: dict[str, Any] | None
    status: int

    @property
    def creates(self) -> bool:
        return self.method == "POST"

    def url(self, account: Account, task_id: str | None) -> str:
        if self.creates:
            return account.tasks_url
        return f"{account.tasks_url}/{task_id}{self.suffix}"

    async def send(
        self,
        client: httpx.AsyncClient,
        account: Account,
        task_id: str | None,
        key: str | bytes | None = KEY,
        **headers: str,
    ) -> httpx.Response:
        sent: dict[str, Any] = {**account.headers, **headers}
        if key is not None:
            sent["Idempotency-Key"] = key
        return await client.request(
            self.method, self.url(account, task_id), json=self.json, headers=sent
        )


CREATE = Write("create", "POST", "", {"title": "Keyed", "description": "by key"}, 201)
PUT = Write("put", "PUT", "", {"title": "Keyed", "description": "by key"}, 200)
PATCH = Write("patch", "PATCH", "", {"title": "Keyed"}, 200)
TOGGLE = Write("toggle", "PATCH", "/complete", None, 200)
DELETE = Write("delete", "DELETE", "", None, 204)
WRITES = [CREATE, PUT, PATCH, TOGGLE, DELETE]
each_write = pytest.mark.parametrize("write", WRITES, ids=[write.name for write in WRITES])


async def target_of(client: httpx.AsyncClient, account: Account, write: Write) -> str | None:
    """The task ``write`` acts on: a fresh one at version 1, or None for a create."""
    if write.creates:
        return None
    created = await create_task(client, account, "Before", description="as it was")
    return str(created["id"])


def written_id(write: Write, response: httpx.Response, task_id: str | None) -> str:
    return str(response.json()["id"]) if write.creates else str(task_id)


def assert_stored_body_is(stored: str | None, response: httpx.Response) -> None:
    """The key row's body is the answer's task (PostgreSQL writes times in its own form)."""
    if response.status_code == 204:
        assert stored is None
        return
    assert stored is not None
    stored_task = json.loads(stored)
    answered = response.json()
    assert set(stored_task) >= set(answered)
    for name, value in answered.items():
        if name.endswith("_at") and value is not None:
            assert parse_time(stored_task[name]) == parse_time(value), name
        else:
            assert stored_task[name] == value, name


def assert_same_answer(first: httpx.Response, retry: httpx.Response) -> None:
    """``retry`` is ``first`` replayed: status, bytes and the headers that matter."""
    assert REPLAYED not in first.headers
    assert retry.headers.get(REPLAYED) == "true"
    assert retry.status_code == first.status_code, retry.text
    assert retry.content == first.content
    for header in ("etag", "location", "content-type"):
        assert retry.headers.get(header) == first.headers.get(header), header


# --- the first request, and its stored key -------------------------------------------------------


@each_write
async def test_a_keyed_write_answers_as_usual_and_commits_its_key_with_it(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine, write: Write
) -> None:
    task_id = await target_of(client, account, write)

    response = await write.send(client, account, task_id)

    assert response.status_code == write.status, response.text
    assert REPLAYED not in response.headers
    row = await task_row(engine, written_id(write, response, task_id))
    if write is DELETE:
        assert response.content == b""
        assert row is not None
        assert row["deleted_at"] is not None  # in the trash
    else:
        assert_task_shape(response.json())
        assert response.headers["etag"] == etag(response.json()["version"])
        assert_body_matches_row(response.json(), row)
    stored = await key_row(engine, account.id, KEY)
    assert stored is not None
    assert str(stored["user_id"]) == account.id
    assert stored["status"] == write.status
    assert isinstance(stored["fingerprint"], bytes)
    assert len(stored["fingerprint"]) == 32
    assert_stored_body_is(stored["body"], response)
    assert await key_count(engine) == 1


async def test_a_write_without_a_key_stores_none(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    created = await create_task(client, account)
    await client.patch(f"{account.tasks_url}/{created['id']}/complete", headers=account.headers)

    assert await key_count(engine) == 0


async def test_different_requests_store_different_fingerprints(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    task_id = await target_of(client, account, TOGGLE)
    await TOGGLE.send(client, account, task_id, key="first")
    await PATCH.send(client, account, task_id, key="second")
    await CREATE.send(client, account, None, key="third")

    rows = [await key_row(engine, account.id, key) for key in ("first", "second", "third")]

    fingerprints = {row["fingerprint"] for row in rows if row is not None}
    assert len(fingerprints) == 3


# --- the retry -----------------------------------------------------------------------------------


@each_write
async def test_a_retry_replays_the_first_answer_and_writes_once(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine, write: Write
) -> None:
    task_id = await target_of(client, account, write)
    first = await write.send(client, account, task_id)
    assert first.status_code == write.status, first.text
    stored = await key_row(engine, account.id, KEY)

    retry = await write.send(client, account, task_id)

    assert_same_answer(first, retry)
    row = await task_row(engine, written_id(write, first, task_id))
    if write is DELETE:
        # In the trash once; without the key a second DELETE would be a 404.
        assert row is not None
        assert row["deleted_at"] is not None
        assert row["version"] == 2  # trashed once
    else:
        assert row is not None
        assert row["version"] == (1 if write.creates else 2)
        assert_body_matches_row(first.json(), row)
    assert await user_task_count(engine, account.id) == 1
    assert await key_row(engine, account.id, KEY) == stored
    assert await key_count(engine) == 1


async def test_many_retries_toggle_once(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    task_id = await target_of(client, account, TOGGLE)
    first = await TOGGLE.send(client, account, task_id)

    retries = [await TOGGLE.send(client, account, task_id) for _ in range(4)]

    for retry in retries:
        assert_same_answer(first, retry)
    row = await task_row(engine, str(task_id))
    assert row is not None
    assert (row["completed"], row["version"]) == (True, 2)


async def change_meanwhile(
    other: httpx.AsyncClient,
    account: Account,
    write: Write,
    first: httpx.Response,
    task_id: str | None,
) -> None:
    """Someone else changes what ``first`` wrote, without a key."""
    if write is CREATE:
        # Deleted for good: through the trash, and out of it.
        created = first.json()["id"]
        for url in (f"{account.tasks_url}/{created}", f"/api/{account.id}/trash/{created}"):
            response = await other.delete(url, headers=account.headers)
            assert response.status_code == 204, response.text
    elif write is DELETE:
        # Restored from the trash by another tab.
        response = await other.post(
            f"/api/{account.id}/trash/{task_id}/restore", headers=account.headers
        )
        assert response.status_code == 200, response.text
    else:
        response = await other.patch(
            f"{account.tasks_url}/{task_id}",
            json={"title": "Elsewhere", "completed": False},
            headers=account.headers,
        )
        assert response.status_code == 200, response.text


@each_write
async def test_a_retry_after_someone_else_changed_the_task_replays_the_original_answer(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine, write: Write
) -> None:
    task_id = await target_of(client, account, write)
    first = await write.send(client, account, task_id)
    assert first.status_code == write.status, first.text
    await change_meanwhile(client, account, write, first, task_id)
    changed_id = written_id(write, first, task_id)
    before = await task_row(engine, changed_id)

    retry = await write.send(client, account, task_id)

    assert_same_answer(first, retry)
    # The replay is the first answer, not the task now; and the task is left as it is.
    assert await task_row(engine, changed_id) == before
    if write is CREATE:
        assert await user_task_count(engine, account.id) == 0


async def test_a_retry_with_the_same_if_match_replays_instead_of_412(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    # The client lost the first answer: its retry still names the version it started from.
    task_id = await target_of(client, account, PATCH)
    first = await PATCH.send(client, account, task_id, **{"If-Match": '"1"'})
    assert first.status_code == 200, first.text

    retry = await PATCH.send(client, account, task_id, **{"If-Match": '"1"'})

    assert_same_answer(first, retry)
    assert_body_matches_row(first.json(), await task_row(engine, str(task_id)))


async def test_a_retried_conditional_delete_replays_204_instead_of_404(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    task_id = await target_of(client, account, DELETE)
    first = await DELETE.send(client, account, task_id, **{"If-Match": '"1"'})
    assert first.status_code == 204, first.text

    retry = await DELETE.send(client, account, task_id, **{"If-Match": '"1"'})

    assert_same_answer(first, retry)
    assert await is_trashed(engine, str(task_id))


@pytest.mark.parametrize(
    "created_at",
    [
        "2026-01-02 03:04:05+00",
        "2026-01-02 03:04:05.1+00",
        "2026-01-02 03:04:05.12345+00",
        "2026-01-02 03:04:05.000001-07:00",
        "1999-12-31 23:59:59.999999+13:45",
    ],
)
async def test_a_replay_is_byte_identical_whatever_the_content_and_its_times(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine, created_at: str
) -> None:
    # PostgreSQL renders the stored answer; the replay must still be the first answer's bytes.
    created = await create_task(
        client, account, 'Ünïcödé "quoted" \\ 😀', description='line\nbreak\t"tab" </script>'
    )
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE tasks SET created_at = CAST(CAST(:at AS text) AS timestamptz) "
                "WHERE id = :id"
            ),
            {"at": created_at, "id": uuid.UUID(created["id"])},
        )
    url = f"{account.tasks_url}/{created['id']}/complete"
    headers = {**account.headers, "Idempotency-Key": KEY}
    first = await client.patch(url, headers=headers)
    assert first.status_code == 200, first.text

    retry = await client.patch(url, headers=headers)

    assert_same_answer(first, retry)
    row = await task_row(engine, created["id"])
    assert_body_matches_row(retry.json(), row)
    assert row is not None
    assert row["version"] == 3  # the UPDATE above, then the toggle once


async def test_a_retried_empty_patch_replays_its_first_answer(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    # An empty PATCH is a write request like any other: its key keeps its first answer.
    task_id = str(await target_of(client, account, PATCH))
    url = f"{account.tasks_url}/{task_id}"
    headers = {**account.headers, "Idempotency-Key": KEY}
    first = await client.patch(url, json={}, headers=headers)
    assert first.status_code == 200, first.text
    await client.patch(f"{url}/complete", headers=account.headers)
    before = await task_row(engine, task_id)

    retry = await client.patch(url, json={}, headers=headers)

    assert_same_answer(first, retry)
    assert await task_row(engine, task_id) == before
    assert await key_row(engine, account.id, KEY) is not None


async def test_the_key_of_an_empty_patch_cannot_be_reused_for_another_request(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    task_id = str(await target_of(client, account, PATCH))
    url = f"{account.tasks_url}/{task_id}"
    headers = {**account.headers, "Idempotency-Key": KEY}
    first = await client.patch(url, json={}, headers=headers)
    assert first.status_code == 200, first.text
    before = await task_row(engine, task_id)

    response = await client.patch(url, json={"title": "other"}, headers=headers)

    assert response.status_code == 422, response.text
    assert response.json() == KEY_REUSED
    assert await task_row(engine, task_id) == before


async def test_a_cross_origin_spa_can_read_that_an_answer_was_replayed(
    database_url: str, account: Account
) -> None:
    # Idempotent-Replayed is for the client: a browser hides it unless CORS exposes it.
    origin = "http://spa.example:5173"
    app = create_app(make_settings(database_url, cors_origins=[origin]))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as spa:
            headers = {"Origin": origin}
            first = await CREATE.send(spa, account, None, **headers)
            retry = await CREATE.send(spa, account, None, **headers)

    assert_same_answer(first, retry)
    assert retry.headers["access-control-allow-origin"] == origin
    exposed = {
        name.strip().lower() for name in retry.headers["access-control-expose-headers"].split(",")
    }
    assert exposed >= {"etag", "location", "retry-after", "idempotent-replayed"}


# --- the same key on another request -------------------------------------------------------------


@pytest.mark.parametrize(
    ("write", "other_body"),
    [
        (CREATE, {"title": "Keyed", "description": "something else"}),
        (CREATE, {"title": "Keyed"}),
        (PUT, {"title": "Other"}),
        (PATCH, {"title": "Keyed", "description": "more"}),
        (PATCH, {"completed": True}),
    ],
    ids=["create", "create-fewer-fields", "put", "patch-more-fields", "patch-other-field"],
)
async def test_the_same_key_with_another_body_answers_422_and_writes_nothing(
    client: httpx.AsyncClient,
    account: Account,
    engine: AsyncEngine,
    write: Write,
    other_body: dict[str, Any],
) -> None:
    task_id = await target_of(client, account, write)
    first = await write.send(client, account, task_id)
    assert first.status_code == write.status, first.text
    written = written_id(write, first, task_id)
    row_before = await task_row(engine, written)
    key_before = await key_row(engine, account.id, KEY)

    response = await client.request(
        write.method,
        write.url(account, task_id),
        json=other_body,
        headers={**account.headers, "Idempotency-Key": KEY},
    )

    assert response.status_code == 422, response.text
    assert response.json() == KEY_REUSED
    assert REPLAYED not in response.headers
    assert await task_row(engine, written) == row_before
    assert await user_task_count(engine, account.id) == 1
    assert await key_row(engine, account.id, KEY) == key_before


Request = tuple[str, str, dict[str, Any] | None]  # method, URL ({x} and {y} are two tasks), JSON


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("PATCH", "{x}/complete", None), ("PATCH", "{y}/complete", None)),
        (("PATCH", "{x}/complete", None), ("DELETE", "{x}", None)),
        (("DELETE", "{x}", None), ("DELETE", "{y}", None)),
        (("PUT", "{x}", {"title": "same"}), ("PATCH", "{x}", {"title": "same"})),
        (("PATCH", "{x}", {"title": "same"}), ("PATCH", "{y}", {"title": "same"})),
        (("POST", "", {"title": "same"}), ("PUT", "{y}", {"title": "same"})),
        (("PUT", "{x}", {"title": "same"}), ("POST", "", {"title": "same"})),
    ],
    ids=[
        "toggle-another-task",
        "toggle-then-delete",
        "delete-another-task",
        "put-then-patch",
        "patch-another-task",
        "create-then-put",
        "put-then-create",
    ],
)
async def test_the_same_key_on_another_route_or_task_answers_422_and_writes_nothing(
    client: httpx.AsyncClient,
    account: Account,
    engine: AsyncEngine,
    first: Request,
    second: Request,
) -> None:
    x = await create_task(client, account, "x")
    y = await create_task(client, account, "y")
    headers = {**account.headers, "Idempotency-Key": KEY}

    def url(template: str) -> str:
        path = template.format(x=x["id"], y=y["id"])
        return f"{account.tasks_url}/{path}" if path else account.tasks_url

    done = await client.request(first[0], url(first[1]), json=first[2], headers=headers)
    assert done.status_code in (200, 201, 204), done.text
    rows_before = {task: await task_row(engine, task) for task in (x["id"], y["id"])}
    count_before = await user_task_count(engine, account.id)

    response = await client.request(second[0], url(second[1]), json=second[2], headers=headers)

    assert response.status_code == 422, response.text
    assert response.json() == KEY_REUSED
    assert {task: await task_row(engine, task) for task in rows_before} == rows_before
    assert await user_task_count(engine, account.id) == count_before


async def test_keys_belong_to_their_user(
    client: httpx.AsyncClient, account: Account, other_account: Account, engine: AsyncEngine
) -> None:
    mine = await CREATE.send(client, account, None)
    assert mine.status_code == 201, mine.text

    theirs = await CREATE.send(client, other_account, None)

    assert theirs.status_code == 201, theirs.text
    assert REPLAYED not in theirs.headers
    assert theirs.json()["user_id"] == other_account.id
    assert theirs.json()["id"] != mine.json()["id"]
    assert await user_task_count(engine, account.id) == 1
    assert await user_task_count(engine, other_account.id) == 1
    assert await key_row(engine, account.id, KEY) is not None
    assert await key_row(engine, other_account.id, KEY) is not None
    assert await key_count(engine) == 2


async def test_another_users_key_on_another_request_is_not_a_conflict(
    client: httpx.AsyncClient, account: Account, other_account: Account, engine: AsyncEngine
) -> None:
    # Were keys global, the second user would learn that someone had used this key.
    mine = await create_task(client, account)
    await TOGGLE.send(client, account, mine["id"])
    theirs = await create_task(client, other_account)

    response = await DELETE.send(client, other_account, theirs["id"])

    assert response.status_code == 204, response.text
    assert REPLAYED not in response.headers
    assert await is_trashed(engine, theirs["id"])


# --- what counts as the same request and the same key --------------------------------------------


@pytest.mark.parametrize(
    ("method", "suffix", "first", "retry"),
    [
        (
            "POST",
            None,
            b'{"title":"Spaced","description":"out"}',
            b'{\n  "description" :  "out" ,\n\t"title": "Spaced"\n}',
        ),
        (
            "PATCH",
            "",
            b'{"title":"Spaced","completed":true}',
            b' { "completed" : true , "title" : "Spaced" } ',
        ),
        ("PUT", "", b'{"title":"\\u00e9"}', '{"title": "é"}'.encode()),
    ],
    ids=["create", "patch", "put-escaped-unicode"],
)
async def test_json_that_differs_only_in_spacing_order_or_escapes_is_the_same_request(
    client: httpx.AsyncClient,
    account: Account,
    engine: AsyncEngine,
    method: str,
    suffix: str | None,
    first: bytes,
    retry: bytes,
) -> None:
    url = account.tasks_url
    if suffix is not None:
        url = f"{url}/{(await create_task(client, account))['id']}{suffix}"
    headers = {**account.headers, "Idempotency-Key": KEY, "Content-Type": "application/json"}
    answered = await client.request(method, url, content=first, headers=headers)
    assert answered.status_code in (200, 201), answered.text

    replayed = await client.request(method, url, content=retry, headers=headers)

    assert_same_answer(answered, replayed)
    assert await user_task_count(engine, account.id) == 1
    assert_body_matches_row(answered.json(), await task_row(engine, answered.json()["id"]))


@pytest.mark.parametrize(
    ("first", "retry", "stored"),
    [
        ("abc", '"abc"', "abc"),
        ('"abc"', "abc", "abc"),
        ('"a\\"b\\\\c"', 'a"b\\c', 'a"b\\c'),
        ("with spaces inside", '"with spaces inside"', "with spaces inside"),
    ],
    ids=["bare-then-quoted", "quoted-then-bare", "escapes", "spaces"],
)
async def test_a_quoted_key_is_the_same_key_as_the_bare_one(
    client: httpx.AsyncClient,
    account: Account,
    engine: AsyncEngine,
    first: str,
    retry: str,
    stored: str,
) -> None:
    answered = await CREATE.send(client, account, None, key=first)
    assert answered.status_code == 201, answered.text

    replayed = await CREATE.send(client, account, None, key=retry)

    assert_same_answer(answered, replayed)
    assert await user_task_count(engine, account.id) == 1
    assert await key_row(engine, account.id, stored) is not None
    assert await key_count(engine) == 1


@pytest.mark.parametrize("key", ["k" * 255, '"' + "k" * 255 + '"', "!", "~" * 3, " padded "])
async def test_keys_of_1_to_255_printable_characters_are_accepted(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine, key: str
) -> None:
    response = await CREATE.send(client, account, None, key=key)

    assert response.status_code == 201, response.text
    stored = key.strip().strip('"')
    row = await key_row(engine, account.id, stored)
    assert row is not None
    assert row["status"] == 201
    assert_body_matches_row(response.json(), await task_row(engine, response.json()["id"]))


@each_write
@pytest.mark.parametrize(
    "key",
    [
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
        pytest.param('""', id="empty-quoted"),
        pytest.param("k" * 256, id="256"),
        pytest.param('"' + "k" * 256 + '"', id="256-quoted"),
        pytest.param("clé".encode("latin-1"), id="latin-1"),
        pytest.param("ключ".encode(), id="utf-8"),
        pytest.param(b"a\x01b", id="control"),
        pytest.param(b"a\x7fb", id="delete"),
        pytest.param(b"a\tb", id="tab"),
    ],
)
async def test_an_invalid_key_answers_422_and_writes_nothing(
    client: httpx.AsyncClient,
    account: Account,
    engine: AsyncEngine,
    write: Write,
    key: str | bytes,
) -> None:
    task_id = await target_of(client, account, write)
    before = await task_row(engine, task_id) if task_id else None

    response = await write.send(client, account, task_id, key=key)

    assert response.status_code == 422, response.text
    assert response.json() == INVALID_KEY
    if task_id is None:
        assert await task_count(engine) == 0
    else:
        assert await task_row(engine, task_id) == before
    assert await key_count(engine) == 0


# --- refused writes store no key -----------------------------------------------------------------


async def test_a_404_is_not_stored_and_the_key_runs_once_the_task_exists(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    task_id = str(uuid.uuid4())
    missing = await PATCH.send(client, account, task_id)
    assert missing.status_code == 404, missing.text
    assert missing.json() == NOT_FOUND
    assert await key_row(engine, account.id, KEY) is None
    await create_task(client, account, "synced later", id=task_id)

    response = await PATCH.send(client, account, task_id)

    assert response.status_code == 200, response.text
    assert REPLAYED not in response.headers
    assert response.json()["title"] == "Keyed"
    assert response.json()["version"] == 2
    assert_body_matches_row(response.json(), await task_row(engine, task_id))
    stored = await key_row(engine, account.id, KEY)
    assert stored is not None
    assert stored["status"] == 200


@pytest.mark.parametrize("write", [PUT, PATCH, TOGGLE, DELETE], ids=lambda w: w.name)
async def test_a_write_to_another_users_task_is_a_404_and_stores_no_key(
    client: httpx.AsyncClient,
    account: Account,
    other_account: Account,
    engine: AsyncEngine,
    write: Write,
) -> None:
    theirs = await create_task(client, other_account)
    before = await task_row(engine, theirs["id"])

    response = await write.send(client, account, theirs["id"])

    assert response.status_code == 404, response.text
    assert response.json() == NOT_FOUND
    assert await task_row(engine, theirs["id"]) == before
    assert await key_count(engine) == 0


@pytest.mark.parametrize("write", [PUT, PATCH, TOGGLE, DELETE], ids=lambda w: w.name)
async def test_a_412_is_not_stored_and_the_key_runs_with_the_current_version(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine, write: Write
) -> None:
    task_id = str(await target_of(client, account, write))
    await client.patch(
        f"{account.tasks_url}/{task_id}", json={"description": "v2"}, headers=account.headers
    )
    stale = await write.send(client, account, task_id, **{"If-Match": '"1"'})
    assert stale.status_code == 412, stale.text
    assert await key_row(engine, account.id, KEY) is None
    assert await key_count(engine) == 0

    response = await write.send(client, account, task_id, **{"If-Match": '"2"'})

    assert response.status_code == write.status, response.text
    assert REPLAYED not in response.headers
    row = await task_row(engine, task_id)
    if write is DELETE:
        assert row is not None
        assert row["deleted_at"] is not None  # in the trash
    else:
        assert response.json()["version"] == 3
        assert_body_matches_row(response.json(), row)
    stored = await key_row(engine, account.id, KEY)
    assert stored is not None
    assert stored["status"] == write.status


async def test_a_409_task_exists_is_not_stored_and_the_key_runs_once_the_id_is_free(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    chosen = str(uuid.uuid4())
    await create_task(client, account, "holds the id", id=chosen)
    body = {"id": chosen, "title": "Keyed"}
    headers = {**account.headers, "Idempotency-Key": KEY}
    taken = await client.post(account.tasks_url, json=body, headers=headers)
    assert taken.status_code == 409, taken.text
    assert taken.json() == TASK_EXISTS
    assert await key_count(engine) == 0
    # The id is free once its task is deleted for good (a trashed task keeps it).
    await client.delete(f"{account.tasks_url}/{chosen}", headers=account.headers)
    await client.delete(f"/api/{account.id}/trash/{chosen}", headers=account.headers)

    response = await client.post(account.tasks_url, json=body, headers=headers)

    assert response.status_code == 201, response.text
    assert REPLAYED not in response.headers
    assert response.json()["title"] == "Keyed"
    assert_body_matches_row(response.json(), await task_row(engine, chosen))
    assert await key_row(engine, account.id, KEY) is not None


async def test_a_422_body_is_not_stored_and_the_key_stays_free(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    headers = {**account.headers, "Idempotency-Key": KEY}
    refused = await client.post(account.tasks_url, json={"title": ""}, headers=headers)
    assert refused.status_code == 422, refused.text
    assert await key_count(engine) == 0

    response = await client.post(account.tasks_url, json={"title": "fixed"}, headers=headers)

    assert response.status_code == 201, response.text
    assert REPLAYED not in response.headers
    assert await user_task_count(engine, account.id) == 1


async def test_a_428_is_not_stored_and_the_key_runs_with_if_match(
    client: httpx.AsyncClient,
    if_match_required_client: httpx.AsyncClient,
    account: Account,
    engine: AsyncEngine,
) -> None:
    task_id = await target_of(client, account, TOGGLE)
    required = await TOGGLE.send(if_match_required_client, account, task_id)
    assert required.status_code == 428, required.text
    assert await key_count(engine) == 0

    response = await TOGGLE.send(if_match_required_client, account, task_id, **{"If-Match": "*"})

    assert response.status_code == 200, response.text
    assert REPLAYED not in response.headers
    assert response.json()["completed"] is True
    assert_body_matches_row(response.json(), await task_row(engine, str(task_id)))


async def test_a_failed_commit_stores_no_key_and_the_retry_creates_once(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    # A deferred constraint fails at COMMIT: the write and its key roll back together, and a
    # 5xx is never stored, so the retry with the same key runs.
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "CREATE FUNCTION reject_commit() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'rejected at commit'; END $$"
            )
        )
        await connection.execute(
            text(
                "CREATE CONSTRAINT TRIGGER reject_commit AFTER INSERT ON tasks "
                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION reject_commit()"
            )
        )
    try:
        failed = await CREATE.send(client, account, None)
    finally:
        async with engine.begin() as connection:
            await connection.execute(text("DROP TRIGGER reject_commit ON tasks"))
            await connection.execute(text("DROP FUNCTION reject_commit()"))
    assert failed.status_code == 500, failed.text
    assert await task_count(engine) == 0
    assert await key_count(engine) == 0

    response = await CREATE.send(client, account, None)

    assert response.status_code == 201, response.text
    assert REPLAYED not in response.headers
    assert await user_task_count(engine, account.id) == 1
    assert await key_row(engine, account.id, KEY) is not None


# --- a retry while the first request runs --------------------------------------------------------


@each_write
async def test_a_key_whose_first_request_is_running_answers_409_and_writes_nothing(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine, write: Write
) -> None:
    task_id = await target_of(client, account, write)
    before = await task_row(engine, task_id) if task_id else None

    async with holding_key_lock(engine, account.id, KEY), asyncio.timeout(TIMEOUT_SECONDS):
        busy = await write.send(client, account, task_id)

        assert busy.status_code == 409, busy.text
        assert busy.json() == IN_USE
        assert busy.headers["retry-after"] == "1"
        assert REPLAYED not in busy.headers
        if task_id is None:
            assert await task_count(engine) == 0
        else:
            assert await task_row(engine, task_id) == before
        assert await key_count(engine) == 0

    retry = await write.send(client, account, task_id)

    assert retry.status_code == write.status, retry.text
    assert REPLAYED not in retry.headers
    assert await key_row(engine, account.id, KEY) is not None
    if write is CREATE:
        assert await user_task_count(engine, account.id) == 1


async def test_a_running_key_holds_up_neither_other_keys_nor_other_users(
    client: httpx.AsyncClient, account: Account, other_account: Account, engine: AsyncEngine
) -> None:
    async with holding_key_lock(engine, account.id, KEY), asyncio.timeout(TIMEOUT_SECONDS):
        other_key = await CREATE.send(client, account, None, key="another key")
        other_user = await CREATE.send(client, other_account, None)
        unkeyed = await CREATE.send(client, account, None, key=None)

    assert [other_key.status_code, other_user.status_code, unkeyed.status_code] == [201] * 3
    assert await user_task_count(engine, account.id) == 2
    assert await user_task_count(engine, other_account.id) == 1


async def wait_for_a_lock_wait(engine: AsyncEngine) -> None:
    """Until some session of this database waits for a lock another transaction holds."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    async with asyncio.timeout(TIMEOUT_SECONDS):
        while True:
            async with engine.connect() as connection:
                if await connection.scalar(query):
                    return
            await asyncio.sleep(0.01)


async def test_a_request_that_claims_a_key_as_its_first_commits_writes_nothing_and_replays(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    # The first request with this key (played here by a transaction of the test's) has not
    # committed when the retry reads the keys, and commits while the retry writes: the retry's
    # key then collides, its write rolls back with it, and it answers what the first stored.
    task_id = str(await target_of(client, account, DELETE))
    request = IdempotentRequest.of(
        KEY,
        method="DELETE",
        route="/api/{user_id}/tasks/{task_id}",
        path={"task_id": task_id},
        body=b"",
    )
    async with engine.connect() as first, first.begin() as transaction:
        await first.execute(
            text(
                "INSERT INTO idempotency_keys (user_id, key, fingerprint, status, body) "
                "VALUES (:user_id, :key, :fingerprint, 204, NULL)"
            ),
            {"user_id": uuid.UUID(account.id), "key": KEY, "fingerprint": request.fingerprint},
        )
        retry = asyncio.create_task(DELETE.send(client, account, task_id))
        await wait_for_a_lock_wait(engine)
        await transaction.commit()
    async with asyncio.timeout(TIMEOUT_SECONDS):
        response = await retry

    assert response.status_code == 204, response.text
    assert response.headers[REPLAYED] == "true"
    # The "first request" deleted nothing, so the task shows the retry's delete rolled back.
    assert await task_row(engine, task_id) is not None
    assert await key_count(engine) == 1


async def send_until_done(
    send: Callable[[], Awaitable[httpx.Response]], attempts: int = 50
) -> list[httpx.Response]:
    """What a client following the retry rule sees: every answer until one that is not a 409
    idempotency_key_in_use (after waiting as little as the test can)."""
    answers = []
    for _ in range(attempts):
        answer = await send()
        answers.append(answer)
        if answer.status_code != 409:
            return answers
        await asyncio.sleep(0.01)
    raise AssertionError(f"still in use after {attempts} attempts")


@pytest.mark.parametrize("round_", range(3))
async def test_concurrent_creates_with_one_key_create_exactly_one_task(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine, round_: int
) -> None:
    concurrent = 10
    key = f"concurrent-{round_}"

    async with asyncio.timeout(TIMEOUT_SECONDS):
        answers = await asyncio.gather(
            *(CREATE.send(client, account, None, key=key) for _ in range(concurrent))
        )

    assert await user_task_count(engine, account.id) == 1
    assert {a.status_code for a in answers} <= {201, 409}
    created = [a for a in answers if a.status_code == 201]
    fresh = [a for a in created if REPLAYED not in a.headers]
    assert len(fresh) == 1
    for answer in created:
        assert answer.content == fresh[0].content
        assert answer.headers["location"] == fresh[0].headers["location"]
    for answer in answers:
        if answer.status_code == 409:
            assert answer.json() == IN_USE
            assert answer.headers["retry-after"] == "1"
    # Every client that retries ends with the same task.
    async with asyncio.timeout(TIMEOUT_SECONDS):
        finals = [
            (await send_until_done(lambda: CREATE.send(client, account, None, key=key)))[-1]
            for _ in range(concurrent)
        ]
    for final in finals:
        assert_same_answer(fresh[0], final)
    assert await user_task_count(engine, account.id) == 1
    assert_body_matches_row(fresh[0].json(), await task_row(engine, fresh[0].json()["id"]))


@pytest.mark.parametrize("write", [PUT, PATCH, TOGGLE, DELETE], ids=lambda w: w.name)
async def test_concurrent_writes_with_one_key_apply_exactly_once(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine, write: Write
) -> None:
    concurrent = 10
    task_id = await target_of(client, account, write)

    async with asyncio.timeout(TIMEOUT_SECONDS):
        answers = await asyncio.gather(
            *(write.send(client, account, task_id) for _ in range(concurrent))
        )

    assert {a.status_code for a in answers} <= {write.status, 409}
    done = [a for a in answers if a.status_code == write.status]
    fresh = [a for a in done if REPLAYED not in a.headers]
    assert len(fresh) == 1
    for answer in done:
        assert answer.content == fresh[0].content
    for answer in answers:
        if answer.status_code == 409:
            assert answer.json() == IN_USE
            assert answer.headers["retry-after"] == "1"
    async with asyncio.timeout(TIMEOUT_SECONDS):
        finals = [
            (await send_until_done(lambda: write.send(client, account, task_id)))[-1]
            for _ in range(concurrent)
        ]
    for final in finals:
        assert_same_answer(fresh[0], final)
    row = await task_row(engine, str(task_id))
    if write is DELETE:
        assert row is not None
        assert row["deleted_at"] is not None  # in the trash
    else:
        assert row is not None
        assert row["version"] == 2
        assert_body_matches_row(fresh[0].json(), row)


async def test_concurrent_toggles_with_distinct_keys_all_apply(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    # The control of the test above: the keys, not some other serialisation, make it once.
    concurrent = 10
    task_id = await target_of(client, account, TOGGLE)

    async with asyncio.timeout(TIMEOUT_SECONDS):
        answers = await asyncio.gather(
            *(TOGGLE.send(client, account, task_id, key=f"k{n}") for n in range(concurrent))
        )

    assert [a.status_code for a in answers] == [200] * concurrent
    assert not any(REPLAYED in a.headers for a in answers)
    row = await task_row(engine, str(task_id))
    assert row is not None
    assert row["version"] == 1 + concurrent
    assert row["completed"] is (concurrent % 2 == 1)
    assert await key_count(engine) == concurrent


# --- client-chosen ids ---------------------------------------------------------------------------


async def test_a_create_with_a_chosen_id_uses_it(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    chosen = str(uuid.uuid4())

    response = await client.post(
        account.tasks_url, json={"id": chosen, "title": "offline"}, headers=account.headers
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert_task_shape(body)
    assert body["id"] == chosen
    assert response.headers["location"] == f"http://testserver{account.tasks_url}/{chosen}"
    assert response.headers["etag"] == '"1"'
    assert_body_matches_row(body, await task_row(engine, chosen))


async def test_a_chosen_id_in_capitals_is_the_same_id(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    chosen = uuid.uuid4()

    response = await client.post(
        account.tasks_url,
        json={"id": str(chosen).upper(), "title": "offline"},
        headers=account.headers,
    )

    assert response.status_code == 201, response.text
    assert response.json()["id"] == str(chosen)
    assert_body_matches_row(response.json(), await task_row(engine, chosen))


async def test_a_create_with_an_id_already_used_answers_409_task_exists(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    chosen = str(uuid.uuid4())
    await create_task(client, account, "first", id=chosen)
    before = await task_row(engine, chosen)

    response = await client.post(
        account.tasks_url, json={"id": chosen, "title": "second"}, headers=account.headers
    )

    assert response.status_code == 409, response.text
    assert response.json() == TASK_EXISTS
    assert "location" not in response.headers
    assert "etag" not in response.headers
    assert await task_row(engine, chosen) == before
    assert await user_task_count(engine, account.id) == 1


async def test_an_id_held_by_another_users_task_answers_the_same_409_and_tells_nothing_more(
    client: httpx.AsyncClient, account: Account, other_account: Account, engine: AsyncEngine
) -> None:
    chosen = str(uuid.uuid4())
    await create_task(client, other_account, "their secret", id=chosen)
    before = await task_row(engine, chosen)

    response = await client.post(
        account.tasks_url, json={"id": chosen, "title": "mine"}, headers=account.headers
    )

    assert response.status_code == 409, response.text
    assert response.json() == TASK_EXISTS
    assert other_account.id not in response.text
    assert "their secret" not in response.text
    assert "location" not in response.headers
    assert await task_row(engine, chosen) == before
    assert await user_task_count(engine, account.id) == 0


async def test_a_chosen_id_with_the_same_key_replays_201_not_409(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    body = {"id": str(uuid.uuid4()), "title": "offline"}
    headers = {**account.headers, "Idempotency-Key": KEY}
    first = await client.post(account.tasks_url, json=body, headers=headers)
    assert first.status_code == 201, first.text

    retry = await client.post(account.tasks_url, json=body, headers=headers)

    assert_same_answer(first, retry)
    assert await user_task_count(engine, account.id) == 1


async def test_a_chosen_id_with_a_new_key_answers_409_and_stores_no_key(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    body = {"id": str(uuid.uuid4()), "title": "offline"}
    first = await client.post(
        account.tasks_url, json=body, headers={**account.headers, "Idempotency-Key": "one"}
    )
    assert first.status_code == 201, first.text

    response = await client.post(
        account.tasks_url, json=body, headers={**account.headers, "Idempotency-Key": "two"}
    )

    assert response.status_code == 409, response.text
    assert response.json() == TASK_EXISTS
    assert await key_row(engine, account.id, "two") is None
    assert await user_task_count(engine, account.id) == 1


@pytest.mark.parametrize(
    "chosen",
    ["not-a-uuid", "", 42, True, ["id"], str(uuid.uuid4()) + "0"],
    ids=["text", "empty", "number", "boolean", "list", "too-long"],
)
async def test_a_create_with_an_invalid_id_answers_422_and_stores_nothing(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine, chosen: object
) -> None:
    response = await client.post(
        account.tasks_url,
        json={"id": chosen, "title": "offline"},
        headers={**account.headers, "Idempotency-Key": KEY},
    )

    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "validation_error"
    assert ["body", "id"] in [error["loc"][:2] for error in body["errors"]]
    assert await task_count(engine) == 0
    assert await key_count(engine) == 0


async def test_a_create_with_a_null_id_answers_422_and_stores_nothing(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    # The published schema offers no null for "id" (as for PATCH's title and completed, whose
    # null is refused): an explicit null is a client bug, not "choose one for me".
    response = await client.post(
        account.tasks_url, json={"id": None, "title": "offline"}, headers=account.headers
    )

    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "validation_error"
    assert body["detail"] == "Id cannot be null."
    assert body["errors"] == [
        {"loc": ["body", "id"], "msg": "cannot be null", "type": "null_refused"}
    ]
    assert await task_count(engine) == 0
