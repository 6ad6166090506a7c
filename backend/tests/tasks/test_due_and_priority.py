"""Due dates with times and zones, and priority (issue 17): what a create and a PATCH accept,
what they store and answer, and how due tasks sort and filter across zones and DST changes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.accounts import Account
from tests.fixtures.tasks import assert_body_matches_row, create_task, task_row

pytestmark = pytest.mark.usefixtures("clean_tasks")


async def listed(client: httpx.AsyncClient, account: Account, **params: str) -> list[dict]:
    response = await client.get(account.tasks_url, params=params, headers=account.headers)
    assert response.status_code == 200, response.text
    body: list[dict[str, Any]] = response.json()
    return body


async def test_a_timed_due_stores_the_wall_clock_the_zone_and_the_instant(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    due = {"datetime": "2026-05-01T09:00:00", "timezone": "Europe/Berlin"}
    task = await create_task(client, account, "call", due=due, priority=3)
    assert task["due"] == {**due, "at": "2026-05-01T07:00:00Z"}
    assert task["priority"] == 3
    row = await task_row(engine, task["id"])
    assert_body_matches_row(task, row)
    assert row is not None
    assert row["due_at"] == datetime(2026, 5, 1, 7, 0, tzinfo=UTC)
    fetched = await client.get(f"{account.tasks_url}/{task['id']}", headers=account.headers)
    assert fetched.json() == task


async def test_an_all_day_due_is_a_date_and_a_task_without_is_null_and_priority_zero(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    day = await create_task(client, account, "day", due={"date": "2026-05-01"})
    assert day["due"] == {"date": "2026-05-01"}
    assert_body_matches_row(day, await task_row(engine, day["id"]))
    plain = await create_task(client, account, "plain")
    assert (plain["due"], plain["priority"]) == (None, 0)


@pytest.mark.parametrize(
    ("wall_clock", "zone", "instant"),
    [
        # Clocks jump 02:00 -> 03:00 (CET -> CEST): 02:30 is read with the offset before the jump.
        ("2026-03-29T02:30:00", "Europe/Berlin", "2026-03-29T01:30:00Z"),
        # Clocks go back 03:00 -> 02:00 (CEST -> CET): 02:30 happens twice; the first one counts.
        ("2026-10-25T02:30:00", "Europe/Berlin", "2026-10-25T00:30:00Z"),
        ("2026-03-08T02:30:00", "America/New_York", "2026-03-08T07:30:00Z"),
        ("2026-11-01T01:30:00", "America/New_York", "2026-11-01T05:30:00Z"),
        ("2026-07-01T12:00:00", "Asia/Kolkata", "2026-07-01T06:30:00Z"),
        ("2026-07-01T12:00:00", "UTC", "2026-07-01T12:00:00Z"),
    ],
)
async def test_skipped_and_repeated_times_are_read_as_rfc_5545_reads_them(
    client: httpx.AsyncClient, account: Account, wall_clock: str, zone: str, instant: str
) -> None:
    task = await create_task(client, account, "t", due={"datetime": wall_clock, "timezone": zone})
    assert task["due"] == {"datetime": wall_clock, "timezone": zone, "at": instant}


@pytest.mark.parametrize(
    "due",
    [
        {"datetime": "2026-05-01T09:00:00"},
        {"datetime": "2026-05-01T09:00:00", "timezone": "Mars/Olympus"},
        {"datetime": "2026-05-01T09:00:00", "timezone": "../../etc/passwd"},
        {"datetime": "2026-05-01T09:00:00", "timezone": "europe/berlin"},
        {"datetime": "2026-05-01T09:00:00+02:00", "timezone": "Europe/Berlin"},
        {"datetime": "2026-05-01T09:00:00.5", "timezone": "Europe/Berlin"},
        {"date": "2026-05-01", "timezone": "Europe/Berlin"},
        {"date": "2026-05-01", "datetime": "2026-05-01T09:00:00"},
        {"date": "2026-02-30"},
        {"date": 20260501},
        {"date": 0},
        # Only YYYY-MM-DD: not a Unix time, a date and time, or the basic format.
        {"date": "1746057600"},
        {"date": "2026-05-01T00:00:00+05:00"},
        {"date": "20260501"},
        # The calendar's ends (the driver writes them as infinity) and past the range.
        {"date": "0001-01-01"},
        {"date": "9999-12-31"},
        {"date": "0999-12-31"},
        {"date": "9999-01-01"},
        {"datetime": "0001-01-01T00:00:00", "timezone": "UTC"},
        {"datetime": "9999-12-31T00:00:00", "timezone": "UTC"},
        {"datetime": "9999-12-31T23:59:59", "timezone": "Pacific/Kiritimati"},
        {},
        "2026-05-01",
    ],
)
async def test_a_bad_due_is_refused_and_nothing_is_created(
    client: httpx.AsyncClient, account: Account, due: object
) -> None:
    response = await client.post(
        account.tasks_url, json={"title": "t", "due": due}, headers=account.headers
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    assert await listed(client, account) == []


@pytest.mark.parametrize("priority", [-1, 4, "2", 1.5, True, None])
async def test_a_bad_priority_is_refused(
    client: httpx.AsyncClient, account: Account, priority: object
) -> None:
    response = await client.post(
        account.tasks_url, json={"title": "t", "priority": priority}, headers=account.headers
    )
    assert response.status_code == 422, response.text


async def test_patch_sets_changes_and_clears_the_due_and_the_priority(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    task = await create_task(client, account, "t")
    url = f"{account.tasks_url}/{task['id']}"
    timed = {"datetime": "2026-12-24T18:00:00", "timezone": "America/New_York"}
    response = await client.patch(url, json={"due": timed, "priority": 2}, headers=account.headers)
    assert response.status_code == 200, response.text
    assert response.json()["due"] == {**timed, "at": "2026-12-24T23:00:00Z"}
    assert response.json()["version"] == 2
    response = await client.patch(
        url, json={"due": {"date": "2027-01-01"}}, headers=account.headers
    )
    assert response.json()["due"] == {"date": "2027-01-01"}
    assert response.json()["priority"] == 2
    assert_body_matches_row(response.json(), await task_row(engine, task["id"]))
    response = await client.patch(url, json={"due": None}, headers=account.headers)
    assert response.json()["due"] is None
    assert_body_matches_row(response.json(), await task_row(engine, task["id"]))
    # The same value again is no change: no new version.
    again = await client.patch(url, json={"due": None, "priority": 2}, headers=account.headers)
    assert again.json()["version"] == response.json()["version"]
    refused = await client.patch(url, json={"priority": None}, headers=account.headers)
    assert refused.status_code == 422


async def test_a_keyed_create_with_a_due_replays_the_same_bytes(
    client: httpx.AsyncClient, account: Account
) -> None:
    body = {"title": "t", "due": {"datetime": "2026-05-01T09:00:00", "timezone": "Asia/Tokyo"}}
    headers = {**account.headers, "Idempotency-Key": "due-create"}
    first = await client.post(account.tasks_url, json=body, headers=headers)
    again = await client.post(account.tasks_url, json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.content == first.content


async def test_due_order_compares_instants_across_zones_and_puts_days_at_utc_midnight(
    client: httpx.AsyncClient, account: Account
) -> None:
    """Around Europe's and America's clock changes: wall clocks in different zones sort by the
    instants they stand for; tasks without a due come last in either direction."""
    tasks = {
        # 23:30 in New York on 28 March is 03:30 UTC on the 29th (EDT, -4).
        "ny": {"datetime": "2026-03-28T23:30:00", "timezone": "America/New_York"},
        # 02:30 in Berlin on the 29th does not exist: 01:30 UTC.
        "berlin": {"datetime": "2026-03-29T02:30:00", "timezone": "Europe/Berlin"},
        # 09:00 in Tokyo on the 29th is 00:00 UTC.
        "tokyo": {"datetime": "2026-03-29T09:00:00", "timezone": "Asia/Tokyo"},
        "day": {"date": "2026-03-29"},  # 00:00 UTC, after Tokyo's by id or before: see below
        "later": {"date": "2026-03-30"},
        "none": None,
    }
    ids = {}
    for name, due in tasks.items():
        ids[name] = (await create_task(client, account, name, **({"due": due} if due else {})))[
            "id"
        ]
    ascending = [task["title"] for task in await listed(client, account, sort="due")]
    # Tokyo's 09:00 and the all-day 29th are both 00:00 UTC: the id breaks the tie.
    tied = sorted(["tokyo", "day"], key=lambda name: ids[name])
    assert ascending == [*tied, "berlin", "ny", "later", "none"]
    descending = [task["title"] for task in await listed(client, account, sort="-due")]
    assert descending == ["later", "ny", "berlin", *reversed(tied), "none"]
    # Filters on the same instants: [after, before).
    window = await listed(
        client,
        account,
        due_after="2026-03-29T01:30:00Z",
        due_before="2026-03-30T00:00:00Z",
        sort="due",
    )
    assert [task["title"] for task in window] == ["berlin", "ny"]
    naive = await client.get(
        account.tasks_url, params={"due_before": "2026-03-30T00:00:00"}, headers=account.headers
    )
    assert naive.status_code == 422


async def test_overdue_takes_timed_dues_by_the_instant_and_days_by_the_zones_today(
    client: httpx.AsyncClient, account: Account
) -> None:
    past = await create_task(
        client, account, "past", due={"datetime": "2020-01-01T09:00:00", "timezone": "UTC"}
    )
    await create_task(
        client, account, "future", due={"datetime": "2999-01-01T09:00:00", "timezone": "UTC"}
    )
    yesterday = await create_task(client, account, "yesterday", due={"date": "2020-06-01"})
    # Today in the listing's zone: not overdue until that day is over there.
    today = datetime.now(UTC).astimezone(ZoneInfo("Pacific/Kiritimati")).date().isoformat()
    await create_task(client, account, "today", due={"date": today})
    done = await create_task(client, account, "done", due={"date": "2020-06-01"})
    await client.patch(f"{account.tasks_url}/{done['id']}/complete", headers=account.headers)
    await create_task(client, account, "no due")

    overdue = await listed(client, account, overdue="true", tz="Pacific/Kiritimati")
    assert {task["title"] for task in overdue} == {"past", "yesterday"}
    not_overdue = await listed(client, account, overdue="false", tz="Pacific/Kiritimati")
    assert {task["title"] for task in not_overdue} == {"future", "today", "done", "no due"}
    assert {past["id"], yesterday["id"]}.isdisjoint(task["id"] for task in not_overdue)
    bad = await client.get(
        account.tasks_url, params={"overdue": "true", "tz": "Nowhere/Land"}, headers=account.headers
    )
    assert bad.status_code == 422


async def test_an_all_day_due_is_overdue_by_the_listings_zone(
    client: httpx.AsyncClient, account: Account
) -> None:
    """Today in Pago Pago (UTC-11) is always yesterday in Kiritimati (UTC+14), 25 hours ahead:
    a task due today in Pago Pago is overdue there, not here."""
    today_in_pago_pago = datetime.now(UTC).astimezone(ZoneInfo("Pacific/Pago_Pago")).date()
    task = await create_task(client, account, "t", due={"date": today_in_pago_pago.isoformat()})
    ahead = await listed(client, account, overdue="true", tz="Pacific/Kiritimati")
    assert [found["id"] for found in ahead] == [task["id"]]
    assert await listed(client, account, overdue="true", tz="Pacific/Pago_Pago") == []
    behind = await listed(client, account, overdue="false", tz="Pacific/Pago_Pago")
    assert [found["id"] for found in behind] == [task["id"]]


@pytest.mark.parametrize("zone", ["localtime", "posixrules", "Factory"])
async def test_a_host_file_is_not_a_time_zone(
    client: httpx.AsyncClient, account: Account, zone: str
) -> None:
    due = {"datetime": "2026-05-01T09:00:00", "timezone": zone}
    response = await client.post(
        account.tasks_url, json={"title": "t", "due": due}, headers=account.headers
    )
    assert response.status_code == 422
    listing = await client.get(
        account.tasks_url, params={"overdue": "true", "tz": zone}, headers=account.headers
    )
    assert listing.status_code == 422


async def test_priority_filters_and_sorts_with_ties_by_id(
    client: httpx.AsyncClient, account: Account
) -> None:
    made = [
        await create_task(client, account, f"p{p}-{n}", priority=p)
        for n in range(2)
        for p in (0, 3, 1)
    ]
    high = await listed(client, account, priority="3")
    assert {task["title"] for task in high} == {"p3-0", "p3-1"}
    ordered = await listed(client, account, sort="-priority")
    expected = sorted(made, key=lambda task: (task["priority"], task["id"]), reverse=True)
    assert [task["id"] for task in ordered] == [task["id"] for task in expected]


# The ends of the range, with the zones whose offsets take them furthest: Metlakatla's
# local mean time (+15:13:42) in the year 1000, and UTC-12.
FIRST_DUES = [
    {"date": "1000-01-01"},
    {"datetime": "1000-01-01T00:00:00", "timezone": "America/Metlakatla"},
]
LAST_DUES = [
    {"date": "9998-12-31"},
    {"datetime": "9998-12-31T23:59:59", "timezone": "Etc/GMT+12"},
]


async def test_the_ends_of_the_due_range_are_kept_sorted_paged_and_found_by_the_filters(
    client: httpx.AsyncClient, account: Account, engine: AsyncEngine
) -> None:
    first = [await create_task(client, account, "first", due=due) for due in FIRST_DUES]
    last = [await create_task(client, account, "last", due=due) for due in LAST_DUES]
    middle = await create_task(client, account, "middle", due={"date": "2026-05-01"})
    for task, due in zip(first + last, FIRST_DUES + LAST_DUES, strict=True):
        assert {key: task["due"][key] for key in due} == due
        assert_body_matches_row(task, await task_row(engine, task["id"]))
    assert first[1]["due"]["at"] == "0999-12-31T08:46:18Z"
    assert last[1]["due"]["at"] == "9999-01-01T11:59:59Z"
    # Page by page (a cursor after each task), in instant order both ways.
    ascending = [first[1], first[0], middle, last[0], last[1]]
    for sort, expected in (("due", ascending), ("-due", ascending[::-1])):
        seen: list[str] = []
        # (The next page's URL carries its query: params=None keeps it, {} would drop it.)
        params: dict[str, str] | None = {"sort": sort, "limit": "1"}
        url = account.tasks_url
        while True:
            response = await client.get(url, params=params, headers=account.headers)
            assert response.status_code == 200, response.text
            seen += [row["id"] for row in response.json()]
            if "next" not in response.links:
                break
            url, params = response.links["next"]["url"], None
        assert seen == [task["id"] for task in expected]
    # Filters at and past the ends find them, however far out (or out of the calendar).
    ids = {task["id"] for task in first + last} | {middle["id"]}
    for everything in (
        {"due_after": "0999-12-31T08:46:18Z", "due_before": "9999-01-01T12:00:00Z"},
        {"due_after": "0001-01-01T00:00:00+14:00", "due_before": "9999-12-31T23:59:59-14:00"},
        {"due_after": "0001-01-01T00:00:00Z", "due_before": "9999-12-31T23:59:59Z"},
    ):
        assert {row["id"] for row in await listed(client, account, **everything)} == ids
    for nothing in (
        {"due_before": "0999-12-31T08:46:18Z"},
        {"due_before": "0001-01-01T00:00:00+00:01"},
        {"due_after": "9999-01-01T12:00:00Z"},
        {"due_after": "9999-12-31T23:59:59-14:00"},
    ):
        assert await listed(client, account, **nothing) == []


async def test_a_due_error_names_the_field_and_never_repeats_the_input(
    client: httpx.AsyncClient, account: Account
) -> None:
    cases = [
        ({"date": "0001-01-01"}, ["body", "due", "date"], "from 1000-01-01 to 9998-12-31"),
        ({"date": "1746057600"}, ["body", "due", "date"], "YYYY-MM-DD"),
        (
            {"datetime": "2026-05-01T09:00:00", "timezone": "Mars/Olympus"},
            ["body", "due", "timezone"],
            "unknown time zone",
        ),
        ({"datetime": "9999-12-31T00:00:00", "timezone": "UTC"}, ["body", "due"], "9998-12-31"),
        ("2026-05-01", ["body", "due"], '{"date": ...}'),
    ]
    for due, loc, words in cases:
        response = await client.post(
            account.tasks_url, json={"title": "t", "due": due}, headers=account.headers
        )
        assert response.status_code == 422, response.text
        body = response.json()
        assert [error["loc"] for error in body["errors"]] == [loc], body
        assert words in body["detail"], body
        assert "Mars" not in response.text
        assert "_due_kind" not in response.text


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("due_before", "1714521600"),
        ("due_before", "2026-05-01"),
        ("due_after", "2026-05-01T09:00:00"),
        ("due_after", "2026-05-01T09:00+02:00"),
        ("due_after", "2026-05-01T09:00:00 02:00"),
        ("due_before", "\u0662026-05-01T09:00:00Z"),
    ],
)
async def test_a_due_filter_that_is_not_rfc_3339_is_refused(
    client: httpx.AsyncClient, account: Account, name: str, value: str
) -> None:
    response = await client.get(account.tasks_url, params={name: value}, headers=account.headers)
    assert response.status_code == 422, response.text
    body = response.json()
    assert [error["loc"] for error in body["errors"]] == [["query", name]]
    assert "RFC 3339" in body["detail"]


async def test_tz_is_checked_even_without_overdue(
    client: httpx.AsyncClient, account: Account
) -> None:
    response = await client.get(
        account.tasks_url, params={"tz": "Mars/Olympus"}, headers=account.headers
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["query", "tz"]
    assert "Mars" not in response.text
