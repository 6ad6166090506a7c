"""Two tabs of one user kept in step by the event stream, in a real browser: Chromium opens
live.html from the SPA's origin, which holds two tabs (frames, each logged in on its own) that
read GET /api/{user_id}/events cross-origin with fetch. What tab A writes (create, toggle,
rename, delete) reaches tab B through its stream; tab B then aborts its stream, tab A makes one
change, and tab B resumes with Last-Event-ID. Machinery: tests/fixtures/browser.py; the stream
reader, the example of how a browser consumes the stream: spa/event-stream-reader.js; the
tabs: spa/live.js and spa/live-tab.js.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.browser import Report, Visit

# A server process and a browser per module: scheduled first (see conftest.py).
pytestmark = pytest.mark.slow

WRITES = ("create", "toggle", "rename", "delete")
RESUMED_WRITES = ("create while B is away", "toggle after B is back")
# How long a change may take from tab A's request to tab B's stream.
DELIVERY_MS = 2000


def written(visit: Visit, action: str) -> Report:
    return visit.step(f"A {action}")


def upsert(visit: Visit, action: str) -> dict[str, Any]:
    """The event a write that answered a task should bring: its very answer, as an upsert."""
    return {
        "event": "task.upsert",
        "data": {"op": "upsert", "task": written(visit, action)["body"]},
    }


def received(stream: Report) -> list[dict[str, Any]]:
    """A stream's events without their ids and arrival times."""
    return [{"event": event["event"], "data": event["data"]} for event in stream["events"]]


def ids(stream: Report) -> list[int]:
    return [int(event["id"]) for event in stream["events"]]


def test_the_page_runs_both_tabs_to_the_end(live_tabs: Visit) -> None:
    assert live_tabs.report["failure"] is None
    assert live_tabs.origin == live_tabs.api.env["CORS_ORIGINS"]
    assert [(step["name"], step.get("status")) for step in live_tabs.steps] == [
        ("signup", 201),
        ("A login", 200),
        ("A stream", 200),
        ("A create", 201),
        ("A toggle", 200),
        ("A rename", 200),
        ("A delete", 204),
        ("A create while B is away", 201),
        ("A toggle after B is back", 200),
        ("B login", 200),
        ("B stream", 200),
        ("B resumed stream", 200),
    ]
    streams = [live_tabs.step(name) for name in ("A stream", "B stream", "B resumed stream")]
    for stream in streams:
        assert stream["contentType"] == "text/event-stream"
        # Opened by a comment; heartbeats are 15 s apart, longer than the page runs.
        assert stream["comments"] == ["stream open"]
        # Every stream was closed by its tab, none by the server.
        assert stream["end"] == "aborted"


def test_each_change_in_tab_a_reaches_tab_b_as_its_event(live_tabs: Visit) -> None:
    stream = live_tabs.step("B stream")
    task_id = written(live_tabs, "create")["body"]["id"]

    assert stream["lastEventId"] is None
    assert received(stream) == [
        upsert(live_tabs, "create"),
        upsert(live_tabs, "toggle"),
        upsert(live_tabs, "rename"),
        {"event": "task.delete", "data": {"op": "delete", "task_id": task_id}},
    ]
    toggled, renamed = (written(live_tabs, action)["body"] for action in ("toggle", "rename"))
    assert (toggled["completed"], renamed["title"]) == (True, "renamed in tab A")
    numbers = ids(stream)
    assert numbers == sorted(set(numbers))


def test_tab_a_s_own_stream_carries_the_same_events(live_tabs: Visit) -> None:
    mine = live_tabs.step("A stream")
    others = [live_tabs.step(name) for name in ("B stream", "B resumed stream")]

    assert [(event["id"], event["data"]) for event in mine["events"]] == [
        (event["id"], event["data"]) for stream in others for event in stream["events"]
    ]


def test_each_change_reaches_tab_b_within_two_seconds(live_tabs: Visit) -> None:
    writes = [written(live_tabs, action) for action in WRITES + RESUMED_WRITES]
    events = [
        event
        for name in ("B stream", "B resumed stream")
        for event in live_tabs.step(name)["events"]
    ]

    assert len(events) == len(writes) == 6
    delays = [
        event["receivedAt"] - write["sentAt"] for write, event in zip(writes, events, strict=True)
    ]
    assert all(0 <= delay <= DELIVERY_MS for delay in delays), delays


def test_tab_b_resumes_with_exactly_the_change_it_missed(live_tabs: Visit) -> None:
    before, resumed = (live_tabs.step(name) for name in ("B stream", "B resumed stream"))

    assert resumed["lastEventId"] == before["events"][-1]["id"]
    # The missed change, then the one made after the reconnect: nothing before, between or
    # again (the stream sends in number order, so a repeat would have come first).
    assert received(resumed) == [
        upsert(live_tabs, "create while B is away"),
        upsert(live_tabs, "toggle after B is back"),
    ]
    numbers = ids(before) + ids(resumed)
    assert numbers == sorted(set(numbers))
    assert ids(resumed)[0] > int(resumed["lastEventId"])


async def test_event_ids_are_the_tasks_change_numbers(
    live_tabs: Visit, engine: AsyncEngine
) -> None:
    first, missed = (
        written(live_tabs, action)["body"]["id"] for action in ("create", RESUMED_WRITES[0])
    )
    async with engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT id, change_seq, deleted_at IS NOT NULL FROM tasks WHERE id IN (:a, :b)"),
            {"a": first, "b": missed},
        )
        tasks = {str(task_id): (seq, trashed) for task_id, seq, trashed in rows}

    before, resumed = (live_tabs.step(name) for name in ("B stream", "B resumed stream"))
    # Each task's last change is the last event about it: the trashing, and the toggle.
    assert tasks == {
        first: (ids(before)[-1], True),
        missed: (ids(resumed)[-1], False),
    }
