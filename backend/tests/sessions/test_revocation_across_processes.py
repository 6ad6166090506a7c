"""An ended session's access tokens are refused by every server process within a second,
with no query on the task routes: each process keeps the revoked session ids, told by the
database's `session_ended` notifications (app/sessions/revocations.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.accounts import PASSWORD
from tests.fixtures.processes import AppServer

# Real server processes: scheduled first (see conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("clean_database")]


@pytest.fixture(scope="module")
def two_servers(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[AppServer, AppServer]]:
    root = tmp_path_factory.mktemp("two-servers")
    with (
        AppServer(database_url=database_url, root=root).serving() as first,
        AppServer(database_url=database_url, root=root).serving() as second,
    ):
        yield first, second


def sign_up(server: AppServer, email: str) -> dict[str, object]:
    response = httpx.post(
        f"{server.base_url}/api/auth/signup",
        json={"email": email, "password": PASSWORD, "include_refresh_token": True},
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def seconds_until_refused(server: AppServer, user_id: object, token: object) -> float:
    """Polls a task route of ``server`` until the token is refused; at most 3 s."""
    started = time.monotonic()
    with httpx.Client(base_url=server.base_url) as http:
        while time.monotonic() - started < 3.0:
            response = http.get(
                f"/api/{user_id}/tasks", headers={"Authorization": f"Bearer {token}"}
            )
            if response.status_code == 401:
                assert response.json()["code"] == "invalid_token"
                return time.monotonic() - started
            assert response.status_code == 200, response.text
            time.sleep(0.01)
    pytest.fail("the token still worked on the other process after 3 s")


def test_a_logout_on_one_process_is_refused_by_the_other_within_a_second(
    two_servers: tuple[AppServer, AppServer],
) -> None:
    first, second = two_servers
    account = sign_up(first, "two-processes@example.com")
    headers = {"Authorization": f"Bearer {account['access_token']}"}
    tasks = f"{second.base_url}/api/{account['id']}/tasks"
    assert httpx.get(tasks, headers=headers).status_code == 200

    ended_at = time.monotonic()
    assert httpx.post(f"{first.base_url}/api/auth/logout", headers=headers).status_code == 204
    elapsed = seconds_until_refused(second, account["id"], account["access_token"])

    assert time.monotonic() - ended_at < 1.0, elapsed
    # The process that ended it refuses it too, and so does a refresh on either.
    assert httpx.get(f"{first.base_url}/api/auth/me", headers=headers).status_code == 401
    refresh = httpx.post(
        f"{second.base_url}/api/auth/refresh",
        json={"refresh_token": account["refresh_token"]},
    )
    assert refresh.status_code == 401


def test_a_process_started_after_the_end_refuses_the_token_too(
    two_servers: tuple[AppServer, AppServer], database_url: str, tmp_path: Path
) -> None:
    """What a process did not hear (it was not running), it loads at start."""
    first, _ = two_servers
    account = sign_up(first, "late-process@example.com")
    headers = {"Authorization": f"Bearer {account['access_token']}"}
    assert httpx.post(f"{first.base_url}/api/auth/logout", headers=headers).status_code == 204

    with AppServer(database_url=database_url, root=tmp_path).serving() as late:
        response = httpx.get(f"{late.base_url}/api/{account['id']}/tasks", headers=headers)

    assert response.status_code == 401, response.text
    assert response.json()["code"] == "invalid_token"
