"""The SPA's journey in a real browser: Chromium opens a page from a second origin, which calls
the API server cross-origin with fetch. Every assertion is on what the page could read, so a
missing CORS header fails here as it would fail the SPA (machinery: tests/fixtures/browser.py;
the page's script: spa/journey.js)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.browser import Report, Visit

# A server process and a browser per module: scheduled first (see conftest.py).
pytestmark = pytest.mark.slow

TITLES = ("first", "second", "third")
REQUEST_ID = re.compile(r"[0-9a-f]{32}")
REFUSED = "TypeError: Failed to fetch"


def answer(visit: Visit, name: str, status: int) -> Report:
    """Step ``name``, once it is certain the page read the answer, its status and its
    X-Request-ID."""
    step = visit.step(name)
    assert step.get("error") is None, f"the page could not read the answer: {step}"
    assert step["status"] == status, step
    assert REQUEST_ID.fullmatch(step["headers"]["requestId"] or ""), step
    return step


def created(visit: Visit, title: str) -> dict[str, Any]:
    body: dict[str, Any] = visit.step(f"create {title}")["body"]
    return body


def test_the_page_runs_on_a_second_origin_to_the_end(journey: Visit) -> None:
    assert journey.report["failure"] is None
    assert journey.origin == journey.api.env["CORS_ORIGINS"]
    assert journey.origin != journey.api.base_url
    assert [step["name"] for step in journey.steps] == [
        "signup",
        "login",
        *(f"create {title}" for title in TITLES),
        "list page 1",
        "list page 2",
        "patch",
        "conditional patch",
        "retried patch",
        "stale patch",
        "not modified",
        "toggle",
        "delete",
        "get deleted",
        "invalid create",
        "boom",
    ]


def test_sign_up_then_log_in_with_json(journey: Visit) -> None:
    user = answer(journey, "signup", 201)["body"]
    login = answer(journey, "login", 200)["body"]

    assert user["email"] == journey.email
    assert login["token_type"] == "bearer"
    assert login["access_token"]
    assert login["user"]["id"] == user["id"]


def test_each_create_answers_its_task_and_a_readable_location(journey: Visit) -> None:
    user_id = journey.step("signup")["body"]["id"]
    for title in TITLES:
        step = answer(journey, f"create {title}", 201)
        task = step["body"]
        assert (task["title"], task["description"]) == (title, f"the {title} task")
        assert (task["user_id"], task["completed"]) == (user_id, False)
        tasks_url = f"{journey.api.base_url}/api/{user_id}/tasks"
        assert step["headers"]["location"] == f"{tasks_url}/{task['id']}"


def test_pages_followed_by_link_hold_every_task_once_newest_first(journey: Visit) -> None:
    first = answer(journey, "list page 1", 200)
    last = answer(journey, "list page 2", 200)

    assert first["url"].endswith("/tasks?limit=2")
    # The page followed the URL it read from Link, to a page that links nowhere.
    assert first["headers"]["link"] == f'<{last["url"]}>; rel="next"'
    assert last["headers"]["link"] is None
    assert len(first["body"]) == 2
    listed = [task["id"] for task in first["body"] + last["body"]]
    assert listed == [created(journey, title)["id"] for title in reversed(TITLES)]


def test_patch_changes_only_the_fields_sent(journey: Visit) -> None:
    task = answer(journey, "patch", 200)["body"]

    assert task["id"] == created(journey, "first")["id"]
    assert (task["title"], task["description"]) == ("first, renamed", "the first task")
    assert task["version"] == created(journey, "first")["version"] + 1
    assert task["completed"] is False


def test_a_retried_conditional_write_is_replayed_and_a_stale_one_refused(journey: Visit) -> None:
    patched = answer(journey, "patch", 200)
    edited = answer(journey, "conditional patch", 200)
    retried = answer(journey, "retried patch", 200)
    stale = answer(journey, "stale patch", 412)

    # The page read every header it needs through CORS: ETag, the replay marker.
    assert patched["headers"]["etag"] == f'"{patched["body"]["version"]}"'
    assert edited["body"]["version"] == patched["body"]["version"] + 1
    assert edited["headers"]["etag"] == f'"{edited["body"]["version"]}"'
    assert (edited["headers"]["replayed"], retried["headers"]["replayed"]) == (None, "true")
    assert retried["body"] == edited["body"]
    # The stale write changed nothing, and the page got what to merge with.
    assert stale["body"]["code"] == "version_conflict"
    assert stale["body"]["current"] == edited["body"]
    assert stale["headers"]["etag"] == edited["headers"]["etag"]


def test_a_read_of_an_unchanged_task_is_not_modified(journey: Visit) -> None:
    unchanged = answer(journey, "not modified", 304)

    assert unchanged["body"] is None
    assert unchanged["headers"]["etag"] == journey.step("conditional patch")["headers"]["etag"]


def test_toggle_completes_the_task(journey: Visit) -> None:
    task = answer(journey, "toggle", 200)["body"]

    assert task["id"] == created(journey, "second")["id"]
    assert task["title"] == "second"
    assert task["completed"] is True
    assert task["completed_at"] is not None


def test_a_deleted_task_answers_a_readable_404_task_not_found(journey: Visit) -> None:
    deleted = answer(journey, "delete", 204)
    gone = answer(journey, "get deleted", 404)

    assert deleted["body"] is None
    assert gone["url"] == deleted["url"] == journey.step("create third")["headers"]["location"]
    assert gone["body"]["code"] == "task_not_found"
    assert isinstance(gone["body"]["detail"], str)


def test_an_invalid_create_answers_a_readable_422(journey: Visit) -> None:
    body = answer(journey, "invalid create", 422)["body"]

    assert body["code"] == "validation_error"
    assert [error["loc"] for error in body["errors"]] == [["body", "title"]]


def test_an_unexpected_error_answers_a_readable_500_with_its_request_id(journey: Visit) -> None:
    boom = answer(journey, "boom", 500)

    assert boom["body"] == {"detail": "Internal server error", "code": "internal_error"}
    # The id the SPA can show its user is the one on the log line with the traceback.
    request_id = boom["headers"]["requestId"]
    logged = [record["request_id"] for record in journey.server_log("unhandled_error")]
    assert logged == [request_id]


async def test_the_database_holds_what_the_page_was_told(
    journey: Visit, engine: AsyncEngine
) -> None:
    async with engine.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT title, completed, deleted_at IS NOT NULL FROM tasks "
                "JOIN users ON users.id = tasks.user_id "
                "WHERE users.email = :email ORDER BY tasks.created_at"
            ),
            {"email": journey.email},
        )
        tasks = [tuple(row) for row in rows]

    # The third, deleted by the page, is in the trash.
    assert tasks == [
        ("first, renamed", False, False),
        ("second", True, False),
        ("third", False, True),
    ]
    # The description is the retried conditional edit's, applied once; the stale one is not.
    async with engine.connect() as connection:
        first = (
            await connection.execute(
                text("SELECT description, version FROM tasks WHERE id = :id"),
                {"id": created(journey, "first")["id"]},
            )
        ).one()
    assert tuple(first) == ("edited in this tab", 3)


async def test_a_page_from_an_origin_not_listed_can_read_nothing(
    refused: Visit, engine: AsyncEngine
) -> None:
    assert refused.report["failure"] is None
    assert refused.origin not in {refused.api.env["CORS_ORIGINS"], refused.api.base_url}
    # The browser withholds the answer to a simple request and sends no JSON body at all
    # once the preflight is refused: either way the page sees only fetch's TypeError.
    assert [(step["name"], step.get("status"), step.get("error")) for step in refused.steps] == [
        ("health", None, REFUSED),
        ("signup", None, REFUSED),
    ]
    # The API itself would have accepted the sign-up (CORS binds browsers, not servers):
    # no user means the browser never sent it.
    async with engine.connect() as connection:
        users = await connection.execute(
            text("SELECT id FROM users WHERE email = :email"), {"email": refused.email}
        )
        assert users.all() == []
