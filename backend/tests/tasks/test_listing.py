"""The list route's orders and filters (issue 17): every order, in both directions, pages
through with its keyset cursor to exactly the order a model of the tasks predicts."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.accounts import Account
from tests.fixtures.tasks import create_task
from tests.tasks.test_lists import new_list

pytestmark = pytest.mark.usefixtures("clean_tasks")

SORTS = ("position", "due", "priority", "created", "updated")


def due_instant(task: dict[str, Any]) -> datetime | None:
    due = task["due"]
    if due is None:
        return None
    if "at" in due:
        return datetime.fromisoformat(due["at"])
    return datetime.combine(date.fromisoformat(due["date"]), time(0), UTC)


def model_order(tasks: list[dict[str, Any]], sort: str) -> list[str]:
    """What the API promises: the key, then the id, both in the sort's direction; for due, the
    tasks without one last either way."""
    descending = sort.startswith("-")
    name = sort.lstrip("-")
    if name == "due":
        dated = [task for task in tasks if task["due"] is not None]
        undated = [task for task in tasks if task["due"] is None]
        dated.sort(key=lambda task: (due_instant(task), uuid.UUID(task["id"])), reverse=descending)
        undated.sort(key=lambda task: uuid.UUID(task["id"]), reverse=descending)
        return [task["id"] for task in dated + undated]
    field = {"created": "created_at", "updated": "updated_at"}.get(name, name)

    def key(task: dict[str, Any]) -> tuple[Any, uuid.UUID]:
        value = task[field]
        if field.endswith("_at"):
            value = datetime.fromisoformat(value)
        return value, uuid.UUID(task["id"])

    return [task["id"] for task in sorted(tasks, key=key, reverse=descending)]


async def all_pages(
    client: httpx.AsyncClient, account: Account, params: dict[str, str], limit: int
) -> tuple[list[str], int]:
    """Every task of the listing, page by page through the Link headers; and the pages."""
    url: str | None = account.tasks_url
    query: dict[str, str] | None = {**params, "limit": str(limit)}
    ids: list[str] = []
    pages = 0
    while url is not None:
        response = await client.get(url, params=query, headers=account.headers)
        assert response.status_code == 200, response.text
        ids += [task["id"] for task in response.json()]
        pages += 1
        link = response.headers.get("Link")
        url = link[1 : link.index(">")] if link else None
        query = None
    return ids, pages


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    specs=st.lists(
        st.tuples(
            st.integers(0, 3),  # priority
            st.one_of(
                st.none(),
                st.dates(date(2026, 3, 27), date(2026, 3, 31)).map(lambda d: {"date": str(d)}),
                st.tuples(
                    st.datetimes(datetime(2026, 3, 28), datetime(2026, 3, 30)),
                    st.sampled_from(["Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC"]),
                ).map(
                    lambda pair: {
                        "datetime": pair[0].replace(microsecond=0).isoformat(),
                        "timezone": pair[1],
                    }
                ),
            ),
        ),
        min_size=1,
        max_size=12,
    ),
    limit=st.integers(1, 5),
)
async def test_every_order_pages_through_to_the_models_order(
    specs: list[tuple[int, dict[str, str] | None]],
    limit: int,
    client: httpx.AsyncClient,
    account: Account,
) -> None:
    # A list of its own per example, so examples do not see each other's tasks.
    home = await new_list(client, account, f"list {uuid.uuid4()}")
    tasks = []
    for priority, due in specs:
        task = await create_task(
            client, account, "t", list_id=home["id"], priority=priority, due=due
        )
        tasks.append(task)
    for sort in SORTS:
        for direction in ("", "-"):
            ids, pages = await all_pages(
                client, account, {"list_id": home["id"], "sort": direction + sort}, limit
            )
            assert ids == model_order(tasks, direction + sort), direction + sort
            assert pages == max(1, -(-len(tasks) // limit))


async def test_a_page_boundary_inside_a_tie_loses_nothing(
    client: httpx.AsyncClient, account: Account
) -> None:
    """Eight tasks of one priority and one due: only the ids order them, across pages of 3."""
    tasks = [
        await create_task(client, account, "tie", priority=2, due={"date": "2026-05-01"})
        for _ in range(8)
    ]
    for sort in ("priority", "-priority", "due", "-due"):
        ids, _ = await all_pages(client, account, {"sort": sort}, 3)
        assert ids == model_order(tasks, sort)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"sort": "position"}, "list_id"),
        ({"sort": "relevance"}, "give q"),
        ({"sort": "title"}, None),
        ({"sort": "--due"}, None),
        ({"cursor": "not a cursor"}, None),
        ({"priority": "4"}, None),
        ({"q": ""}, None),
        ({"q": "x" * 201}, None),
        ({"q": "milk\x00"}, None),
        (
            {"sort": "position", "list_id": "00000000-0000-0000-0000-000000000000", "cursor": "1."},
            None,
        ),
    ],
)
async def test_a_bad_listing_is_refused(
    client: httpx.AsyncClient, account: Account, params: dict[str, str], message: str | None
) -> None:
    response = await client.get(account.tasks_url, params=params, headers=account.headers)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    if message is not None:
        assert message in response.json()["detail"]


async def test_a_cursor_of_one_order_is_refused_by_another(
    client: httpx.AsyncClient, account: Account
) -> None:
    for _ in range(3):
        await create_task(client, account, "t", priority=1)
    first = await client.get(
        account.tasks_url, params={"sort": "priority", "limit": "1"}, headers=account.headers
    )
    link = first.headers["Link"]
    cursor = link[link.index("cursor=") + 7 : link.index(">")]
    # A position cursor of exactly 32 characters once looked like newest first's own.
    for sort in ("-priority", "due", "created", "-created"):
        response = await client.get(
            account.tasks_url, params={"sort": sort, "cursor": cursor}, headers=account.headers
        )
        assert response.status_code == 422, sort
        assert response.json()["code"] == "invalid_cursor"


async def test_filters_combine(client: httpx.AsyncClient, account: Account) -> None:
    errands = await new_list(client, account)
    match = await create_task(
        client, account, "match", list_id=errands["id"], priority=3, due={"date": "2026-05-02"}
    )
    await create_task(client, account, "other list", priority=3, due={"date": "2026-05-02"})
    await create_task(
        client, account, "low", list_id=errands["id"], priority=1, due={"date": "2026-05-02"}
    )
    await create_task(
        client, account, "late", list_id=errands["id"], priority=3, due={"date": "2026-06-02"}
    )
    done = await create_task(
        client, account, "done", list_id=errands["id"], priority=3, due={"date": "2026-05-02"}
    )
    await client.patch(f"{account.tasks_url}/{done['id']}/complete", headers=account.headers)
    response = await client.get(
        account.tasks_url,
        params={
            "list_id": errands["id"],
            "priority": "3",
            "completed": "false",
            "due_after": "2026-05-01T00:00:00Z",
            "due_before": "2026-05-03T00:00:00+00:00",
            "sort": "position",
        },
        headers=account.headers,
    )
    assert response.status_code == 200, response.text
    assert [task["id"] for task in response.json()] == [match["id"]]
