"""Keyset pagination: the cursor itself, and walking a long list through the Link header."""

from __future__ import annotations

import base64
import re
import struct
import uuid
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.tasks.errors import InvalidCursorError
from app.tasks.pagination import Cursor
from tests.fixtures.accounts import Account
from tests.fixtures.tasks import create_task

# Every test here writes tasks for the package's shared accounts (see conftest.py).
pytestmark = pytest.mark.usefixtures("clean_tasks")

LINK_NEXT = re.compile(r'^<(?P<url>[^>]+)>; rel="next"$')
TASK_COUNT = 250
MAX_PAGES = 50  # bounds every walk below, far above what 250 tasks need


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _token(micros: int, task_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(struct.pack(">q16s", micros, task_id.bytes)).decode()


VALID = _token(0, uuid.uuid4())
TAMPERED_CURSORS = [
    pytest.param("garbage!!", id="not-base64"),
    pytest.param(VALID[:-1] + "!", id="base64-with-junk"),
    pytest.param(VALID[:-1] + "=", id="padding"),
    pytest.param(VALID.replace(VALID[0], "+", 1), id="standard-not-url-alphabet"),
    pytest.param("A", id="impossible-base64-length"),
    pytest.param("", id="empty"),
    pytest.param(VALID[:-1], id="one-character-short"),
    pytest.param(VALID + "A", id="one-character-long"),
    pytest.param(_b64(b"hello world"), id="base64-of-text"),
    pytest.param(_b64(f"2024-01-01T00:00:00+00:00|{uuid.uuid4()}".encode()), id="old-format"),
    pytest.param(VALID + "\u0000", id="nul"),
    pytest.param(VALID + "\n", id="trailing-newline"),
    pytest.param("A" * 2_000, id="far-too-long"),
]


# --- the cursor -----------------------------------------------------------------------------


def test_cursor_round_trips() -> None:
    cursor = Cursor(at=datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC), id=uuid.uuid4())

    assert Cursor.decode(cursor.encode()) == cursor


def test_cursor_is_url_safe_and_32_characters() -> None:
    cursor = Cursor(
        at=datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=-9))),
        id=uuid.UUID(int=2**128 - 1),
    )

    token = cursor.encode()

    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", token)
    assert Cursor.decode(token) == cursor  # the same moment, now in UTC


@pytest.mark.parametrize("micros", [2**63 - 1, -(2**63)])
def test_any_well_formed_cursor_is_a_position_even_an_impossible_time(micros: int) -> None:
    cursor = Cursor.decode(_token(micros, uuid.UUID(int=7)))

    assert cursor.id == uuid.UUID(int=7)
    assert cursor.at in (
        datetime.max.replace(tzinfo=UTC),
        datetime.min.replace(tzinfo=UTC),
    )


@pytest.mark.parametrize("token", TAMPERED_CURSORS)
def test_cursor_decode_rejects_tampered_tokens(token: str) -> None:
    with pytest.raises(InvalidCursorError):
        Cursor.decode(token)


# --- walking the list -----------------------------------------------------------------------


async def _insert_tasks(engine: AsyncEngine, owner_id: str, count: int) -> list[uuid.UUID]:
    """One INSERT: created_at values come in pairs (g / 2), so half the neighbours tie and
    only the id orders them; every third task is completed. Returns ids newest first."""
    async with engine.begin() as connection:
        rows = (
            await connection.execute(
                text(
                    "INSERT INTO tasks (user_id, title, created_at, updated_at, completed, "
                    "completed_at) "
                    "SELECT :owner, 'task ' || g, t, t, g % 3 = 0, "
                    "CASE WHEN g % 3 = 0 THEN t END "
                    "FROM generate_series(1, :count) AS g, "
                    "LATERAL (SELECT timestamptz '2024-01-01 00:00:00+00' "
                    "+ (g / 2) * interval '1 second' AS t) AS times "
                    "RETURNING id, created_at, completed"
                ),
                {"owner": uuid.UUID(owner_id), "count": count},
            )
        ).all()
    newest_first = sorted(rows, key=lambda row: (row.created_at, row.id), reverse=True)
    return [row.id for row in newest_first]


async def _completed_ids(engine: AsyncEngine, owner_id: str) -> set[uuid.UUID]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT id FROM tasks WHERE user_id = :owner AND completed"),
            {"owner": uuid.UUID(owner_id)},
        )
    return {row.id for row in rows}


def _next_url(response: httpx.Response) -> str | None:
    link = response.headers.get("link")
    if link is None:
        return None
    match = LINK_NEXT.match(link)
    assert match, link
    return match["url"]


async def _walk(
    client: httpx.AsyncClient, account: Account, first_url: str
) -> tuple[list[uuid.UUID], list[int]]:
    """Follow Link rel="next" from the first page; returns the ids seen and the page sizes."""
    seen: list[uuid.UUID] = []
    sizes: list[int] = []
    url: str | None = first_url
    for _ in range(MAX_PAGES):
        if url is None:
            return seen, sizes
        response = await client.get(url, headers=account.headers)
        assert response.status_code == 200, response.text
        page = [uuid.UUID(task["id"]) for task in response.json()]
        seen.extend(page)
        sizes.append(len(page))
        url = _next_url(response)
    pytest.fail(f"still a next page after {MAX_PAGES} pages")


async def test_walking_250_tasks_in_pages_of_40_sees_each_once_newest_first(
    client: httpx.AsyncClient, account: Account, other_account: Account, engine: AsyncEngine
) -> None:
    expected = await _insert_tasks(engine, account.id, TASK_COUNT)
    await _insert_tasks(engine, other_account.id, 30)  # same created_at values, not listed

    seen, sizes = await _walk(client, account, f"{account.tasks_url}?limit=40")

    assert sizes == [40, 40, 40, 40, 40, 40, 10]
    assert len(set(seen)) == len(seen)  # no duplicate
    assert seen == expected  # no gap, newest first, ties broken by id descending


async def test_next_link_is_the_full_url_with_limit_and_cursor(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    expected = await _insert_tasks(engine, account.id, 5)

    response = await client.get(account.tasks_url, params={"limit": 2}, headers=account.headers)

    url = _next_url(response)
    assert url is not None
    parsed = httpx.URL(url)
    assert (parsed.scheme, parsed.host, parsed.path) == ("http", "testserver", account.tasks_url)
    assert parsed.params["limit"] == "2"
    assert Cursor.decode(parsed.params["cursor"]).id == expected[1]


async def test_walking_with_a_filter_keeps_the_filter_on_every_page(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    newest_first = await _insert_tasks(engine, account.id, TASK_COUNT)
    completed = await _completed_ids(engine, account.id)
    assert len(completed) == TASK_COUNT // 3

    done, done_sizes = await _walk(client, account, f"{account.tasks_url}?completed=true&limit=30")
    open_, _ = await _walk(client, account, f"{account.tasks_url}?completed=false&limit=70")

    assert done_sizes == [30, 30, 23]
    assert done == [task_id for task_id in newest_first if task_id in completed]
    assert open_ == [task_id for task_id in newest_first if task_id not in completed]


async def test_default_page_is_100_tasks_with_a_next_link(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    expected = await _insert_tasks(engine, account.id, TASK_COUNT)

    response = await client.get(account.tasks_url, headers=account.headers)

    assert response.status_code == 200
    assert [uuid.UUID(task["id"]) for task in response.json()] == expected[:100]
    url = _next_url(response)
    assert url is not None
    assert Cursor.decode(httpx.URL(url).params["cursor"]).id == expected[99]


async def test_limit_500_returns_all_250_without_a_next_link(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    expected = await _insert_tasks(engine, account.id, TASK_COUNT)

    response = await client.get(account.tasks_url, params={"limit": 500}, headers=account.headers)

    assert response.status_code == 200
    assert [uuid.UUID(task["id"]) for task in response.json()] == expected
    assert "link" not in response.headers


async def test_a_page_that_ends_exactly_at_the_last_task_has_no_next_link(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    expected = await _insert_tasks(engine, account.id, 6)

    first = await client.get(account.tasks_url, params={"limit": 3}, headers=account.headers)
    url = _next_url(first)
    assert url is not None
    last = await client.get(url, headers=account.headers)

    assert [uuid.UUID(t["id"]) for t in [*first.json(), *last.json()]] == expected
    assert "link" not in last.headers


async def test_a_cursor_after_the_last_task_gives_an_empty_page(
    client: httpx.AsyncClient, account: Account
) -> None:
    await create_task(client, account)
    cursor = Cursor(at=datetime(2000, 1, 1, tzinfo=UTC), id=uuid.uuid4()).encode()

    response = await client.get(
        account.tasks_url, params={"cursor": cursor}, headers=account.headers
    )

    assert response.status_code == 200
    assert response.json() == []
    assert "link" not in response.headers


@pytest.mark.parametrize("limit", ["0", "-1", "501", "abc", "1.5"])
async def test_limit_outside_1_to_500_is_422(
    client: httpx.AsyncClient, account: Account, limit: str
) -> None:
    response = await client.get(account.tasks_url, params={"limit": limit}, headers=account.headers)

    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "validation_error"
    assert ["query", "limit"] in [error["loc"] for error in body["errors"]]


@pytest.mark.parametrize("cursor", TAMPERED_CURSORS)
async def test_tampered_cursor_is_422(
    client: httpx.AsyncClient, account: Account, cursor: str
) -> None:
    await create_task(client, account)

    response = await client.get(
        account.tasks_url, params={"cursor": cursor}, headers=account.headers
    )

    assert response.status_code == 422, response.text
    assert response.json()["code"] in {"invalid_cursor", "validation_error"}


async def test_cursor_from_the_far_future_starts_at_the_newest_task(
    client: httpx.AsyncClient, account: Account
) -> None:
    task = await create_task(client, account)

    response = await client.get(
        account.tasks_url,
        params={"cursor": _token(2**63 - 1, uuid.UUID(int=0))},
        headers=account.headers,
    )

    assert response.status_code == 200
    assert [item["id"] for item in response.json()] == [task["id"]]
