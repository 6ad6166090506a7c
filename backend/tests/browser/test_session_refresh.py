"""A session kept by the refresh cookie, in a real browser: Chromium opens the SPA's page on
http://localhost:<pages>, which calls the API at http://localhost:<api> (another origin, the
same site, so the SameSite=Strict cookie is sent) with access tokens that last 3 s. The page
logs in, outlives its access token, writes again through one refresh, logs out and finds the
cookie refreshes no more; then logs in again and goes to another site.

The other site is the same page server addressed as http://127.0.0.1:<pages> (127.0.0.1 and
localhost are two sites whatever the ports). The API lists it in CORS_ORIGINS, and the browser
allows third-party cookies, so neither CORS (the page reads every answer) nor a browser default
is what keeps the cookie from it: only SameSite=Strict. Its refresh answers a readable 401
`invalid_refresh_token` (a cookie sent would have refreshed: its origin passes the CSRF guard),
and the SPA's origin, loaded again, still refreshes with that very cookie.

The page is served under /api/auth, the cookie's path, on the cookie's host: document.cookie
there lists a cookie the page sets itself, so a refresh token missing from it is HttpOnly's
doing. Machinery: tests/fixtures/browser.py; the page's client: spa/session.js.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.browser import SessionJourney, Visit

# A server process and a browser per module: scheduled first (see conftest.py).
pytestmark = pytest.mark.slow

TASKS_PATH = re.compile(r"/api/[0-9a-f-]{36}/tasks")
LOGIN, REFRESH, LOGOUT, ME = (f"/api/auth/{name}" for name in ("login", "refresh", "logout", "me"))
TASKS = "/api/{user_id}/tasks"
# The cookie the page sets itself, on the refresh cookie's host and path.
PROBE = "probe=visible"
PHASES = ("spa", "other_site", "reload")

Trace = list[tuple[str, str, str, int | None, str | None]]


def trace(visit: Visit) -> Trace:
    """Each request the page made: the action it was part of, method, path (the user's id
    elided), status and error code."""
    return [
        (
            step["name"],
            step["method"],
            TASKS_PATH.sub(TASKS, step["path"]),
            step.get("status"),
            step["body"].get("code") if isinstance(step.get("body"), dict) else None,
        )
        for step in visit.steps
    ]


def requests(visit: Visit, action: str) -> list[dict[str, Any]]:
    return [step for step in visit.steps if step["name"] == action]


async def sessions_of(engine: AsyncEngine, email: str) -> list[tuple[str | None, int]]:
    """The user's sessions, oldest first: how each ended, and how often it was refreshed."""
    async with engine.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT end_reason, refresh_generation FROM sessions "
                "JOIN users ON users.id = sessions.user_id WHERE users.email = :email "
                "ORDER BY sessions.created_at"
            ),
            {"email": email},
        )
        return [(reason, generation) for reason, generation in rows]


def test_each_load_runs_to_the_end_on_its_origin(session_journey: SessionJourney) -> None:
    spa, other_site, reload = (getattr(session_journey, phase) for phase in PHASES)
    origins = spa.api.env["CORS_ORIGINS"].split(",")
    assert [visit.report["failure"] for visit in (spa, other_site, reload)] == [None] * 3
    assert spa.origin == reload.origin == origins[0]
    assert spa.origin.startswith("http://localhost:")
    assert other_site.origin == origins[1]
    assert other_site.origin.startswith("http://127.0.0.1:")
    assert trace(spa) == [
        ("login", "POST", LOGIN, 200, None),
        ("create before expiry", "POST", TASKS, 201, None),
        ("create after expiry", "POST", TASKS, 401, "token_expired"),
        ("create after expiry", "POST", REFRESH, 200, None),
        ("create after expiry", "POST", TASKS, 201, None),
        ("logout", "POST", LOGOUT, 204, None),
        ("refresh after logout", "POST", REFRESH, 401, "invalid_refresh_token"),
        ("login again", "POST", LOGIN, 200, None),
    ]
    assert trace(other_site) == [
        ("refresh", "POST", REFRESH, 401, "invalid_refresh_token"),
        ("logout by cookie", "POST", LOGOUT, 401, "not_authenticated"),
    ]
    assert trace(reload) == [
        ("restore", "POST", REFRESH, 200, None),
        ("me", "GET", ME, 200, None),
        ("list", "GET", TASKS, 200, None),
        ("logout", "POST", LOGOUT, 204, None),
    ]


def test_login_leaves_the_refresh_token_to_the_cookie(session_journey: SessionJourney) -> None:
    for action in ("login", "login again"):
        (login,) = requests(session_journey.spa, action)
        assert login["credentials"] == "include"
        assert login["body"]["refresh_token"] is None
        assert login["body"]["access_token"]
        assert login["body"]["expires_in"] == 3


def test_a_write_after_expiry_refreshes_once_through_the_cookie_and_succeeds(
    session_journey: SessionJourney,
) -> None:
    (login,) = requests(session_journey.spa, "login")
    expired, refreshed, retried = requests(session_journey.spa, "create after expiry")

    # The refresh is the cookie's: no token in hand, the CSRF header, credentials included.
    assert (refreshed["bearer"], refreshed["csrfHeader"]) == (False, True)
    assert refreshed["credentials"] == "include"
    assert refreshed["body"]["refresh_token"] is None
    assert refreshed["body"]["user"] == login["body"]["user"]
    assert refreshed["body"]["access_token"] != login["body"]["access_token"]
    # The task routes go without credentials (the cookie is not theirs to see).
    assert {expired["credentials"], retried["credentials"]} == {"same-origin"}
    assert retried["body"]["title"] == "after refresh"
    assert retried["body"]["user_id"] == login["body"]["user"]["id"]


async def test_the_writes_before_and_after_the_refresh_are_the_user_s(
    session_journey: SessionJourney, engine: AsyncEngine
) -> None:
    spa = session_journey.spa
    written = [
        requests(spa, action)[-1]["body"]
        for action in ("create before expiry", "create after expiry")
    ]
    async with engine.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT tasks.id, title FROM tasks JOIN users ON users.id = tasks.user_id "
                "WHERE users.email = :email ORDER BY tasks.created_at"
            ),
            {"email": spa.email},
        )
        tasks = [(str(task_id), title) for task_id, title in rows]

    assert tasks == [(task["id"], task["title"]) for task in written]
    assert [task["title"] for task in written] == ["before expiry", "after refresh"]
    listed = requests(session_journey.reload, "list")[0]["body"]
    assert [task["id"] for task in listed] == [task_id for task_id, _ in reversed(tasks)]


async def test_after_logout_the_cookie_refreshes_no_more(
    session_journey: SessionJourney, engine: AsyncEngine
) -> None:
    (logout,) = requests(session_journey.spa, "logout")
    (refused,) = requests(session_journey.spa, "refresh after logout")

    assert (logout["bearer"], logout["credentials"]) == (True, "include")
    assert (refused["csrfHeader"], refused["credentials"]) == (True, "include")
    assert refused["body"]["code"] == "invalid_refresh_token"
    # Each login's session, refreshed once and ended by a logout: the first on the SPA's
    # first load, the second on its reload.
    assert await sessions_of(engine, session_journey.spa.email) == [("logout", 1), ("logout", 1)]


def test_page_script_never_reads_the_refresh_cookie(session_journey: SessionJourney) -> None:
    journey = session_journey
    seen = {
        phase: {step["documentCookie"] for step in getattr(journey, phase).steps}
        for phase in PHASES
    }

    # Read after every answer, Set-Cookie ones included: the page's own cookie, never the
    # refresh token beside it (and nothing at all on the other site's host).
    assert seen == {"spa": {PROBE}, "other_site": {""}, "reload": {PROBE}}


async def test_another_site_cannot_use_the_cookie_the_spa_can(
    session_journey: SessionJourney, engine: AsyncEngine
) -> None:
    (refresh,) = requests(session_journey.other_site, "refresh")
    (logout,) = requests(session_journey.other_site, "logout by cookie")
    (restore,) = requests(session_journey.reload, "restore")

    # Sent with credentials and the CSRF header, answered and read: only the cookie was left
    # out (with it, this listed origin would have refreshed, or logged the user out).
    for request in (refresh, logout):
        assert (request["credentials"], request["csrfHeader"]) == ("include", True)
        assert "error" not in request
    assert refresh["body"]["code"] == "invalid_refresh_token"
    assert logout["body"]["code"] == "not_authenticated"
    # The same cookie, from the SPA's origin right after, renews the second login's session:
    # its one rotation is this one.
    (login_again,) = requests(session_journey.spa, "login again")
    assert restore["status"] == 200
    assert restore["body"]["user"] == login_again["body"]["user"]
    (_, (_, generation)) = await sessions_of(engine, session_journey.spa.email)
    assert generation == 1
