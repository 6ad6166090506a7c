from __future__ import annotations

import os
from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from prometheus_client.parser import text_string_to_metric_families

from app.main import create_app
from tests.fixtures.accounts import Account
from tests.fixtures.app import make_settings

# The users and tasks a test leaves through `client` are deleted after it (see fixtures/app.py).
pytestmark = pytest.mark.usefixtures("clean_database")


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_requests_are_counted_by_route_template_and_status(
    client: httpx.AsyncClient, new_account: Account
) -> None:
    for _ in range(3):
        await client.get(new_account.tasks_url, headers=new_account.headers)
    await client.get(f"{new_account.tasks_url}/not-a-uuid", headers=new_account.headers)

    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = _samples(response.text)
    listed = frozenset({("method", "GET"), ("route", "/api/{user_id}/tasks"), ("status", "200")})
    assert samples[("http_requests_total", listed)] >= 3
    assert samples[("http_request_duration_seconds_count", listed)] >= 3
    invalid = frozenset(
        {("method", "GET"), ("route", "/api/{user_id}/tasks/{task_id}"), ("status", "422")}
    )
    assert samples[("http_requests_total", invalid)] >= 1
    # Raw paths (with ids) never become label values.
    assert new_account.id not in response.text


async def test_unmatched_paths_share_one_label(client: httpx.AsyncClient) -> None:
    await client.get("/no/such/path/12345")
    text = (await client.get("/metrics")).text
    assert "/no/such/path" not in text
    assert 'route="<unmatched>"' in text


async def test_pool_gauges_report_size_and_checked_out(client: httpx.AsyncClient) -> None:
    await client.get("/health/db")
    samples = _samples((await client.get("/metrics")).text)
    # One worker: this process, named by its pid as each of several workers is.
    worker = frozenset({("worker", str(os.getpid()))})
    assert samples[("db_pool_size", worker)] == 20
    assert samples[("db_pool_checked_out", worker)] == 0


@pytest.fixture
async def client_without_metrics(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(database_url, metrics_enabled=False))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


async def test_metrics_can_be_disabled(client_without_metrics: httpx.AsyncClient) -> None:
    assert (await client_without_metrics.get("/metrics")).status_code == 404


SCRAPE_TOKEN = "scrape-" + "t" * 24


@pytest.fixture
async def client_with_a_scrape_token(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(database_url, metrics_token=SCRAPE_TOKEN))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token-of-some-length", f"Basic {SCRAPE_TOKEN}", SCRAPE_TOKEN],
    ids=["none", "wrong", "other-scheme", "bare"],
)
async def test_with_a_token_set_a_scrape_without_it_is_401(
    client_with_a_scrape_token: httpx.AsyncClient, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}

    response = await client_with_a_scrape_token.get("/metrics", headers=headers)

    assert response.status_code == 401
    assert response.json() == {"detail": "A metrics token is required", "code": "not_authenticated"}
    assert response.headers["www-authenticate"] == 'Bearer realm="metrics"'
    assert "http_requests_total" not in response.text


async def test_with_a_token_set_its_bearer_gets_the_numbers(
    client_with_a_scrape_token: httpx.AsyncClient,
) -> None:
    response = await client_with_a_scrape_token.get(
        "/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"}
    )

    assert response.status_code == 200
    assert "http_requests_total" in response.text
