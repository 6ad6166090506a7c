"""The structured events the task routes log: one per change, with user and task."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
import structlog

from tests.fixtures.accounts import Account
from tests.fixtures.tasks import (
    create_task,
)

# Every test here writes tasks for the package's shared accounts (see conftest.py).
pytestmark = pytest.mark.usefixtures("clean_tasks")

TASK_EVENTS = {"task_created", "task_updated", "task_toggled", "task_deleted"}


async def _events(
    client: httpx.AsyncClient, method: str, url: str, account: Account, **kwargs: Any
) -> tuple[httpx.Response, list[dict[str, Any]]]:
    with structlog.testing.capture_logs() as captured:
        response = await client.request(method, url, headers=account.headers, **kwargs)
    return response, [entry for entry in captured if entry["event"] in TASK_EVENTS]


async def test_an_empty_patch_logs_no_event(client: httpx.AsyncClient, account: Account) -> None:
    created = await create_task(client, account)

    response, events = await _events(
        client, "PATCH", f"{account.tasks_url}/{created['id']}", account, json={}
    )

    assert response.status_code == 200
    assert events == []


async def test_create_logs_one_task_created_event(
    client: httpx.AsyncClient, account: Account
) -> None:
    response, events = await _events(
        client, "POST", account.tasks_url, account, json={"title": "t"}
    )

    assert response.status_code == 201
    assert [(e["event"], e["user_id"], e["task_id"]) for e in events] == [
        ("task_created", account.id, response.json()["id"])
    ]


@pytest.mark.parametrize(
    ("method", "suffix", "payload", "event"),
    [
        pytest.param("PUT", "", {"title": "u"}, "task_updated", id="put"),
        pytest.param("PATCH", "", {"completed": True}, "task_updated", id="patch"),
        pytest.param("PATCH", "/complete", None, "task_toggled", id="toggle"),
        pytest.param("DELETE", "", None, "task_deleted", id="delete"),
    ],
)
async def test_each_change_logs_one_event_with_user_and_task(
    client: httpx.AsyncClient,
    account: Account,
    method: str,
    suffix: str,
    payload: dict[str, Any] | None,
    event: str,
) -> None:
    created = await create_task(client, account)

    response, events = await _events(
        client, method, f"{account.tasks_url}/{created['id']}{suffix}", account, json=payload
    )

    assert response.status_code in (200, 204)
    assert [(e["event"], e["user_id"], e["task_id"]) for e in events] == [
        (event, account.id, created["id"])
    ]


async def test_a_change_to_a_missing_task_logs_no_task_event(
    client: httpx.AsyncClient, account: Account
) -> None:
    response, events = await _events(
        client, "PATCH", f"{account.tasks_url}/{uuid.uuid4()}/complete", account
    )

    assert response.status_code == 404
    assert events == []
