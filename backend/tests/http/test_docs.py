"""/docs and /redoc: served with their assets by the app (no CDN), under a CSP that admits no
other origin and no inline script but their own, and switched off by settings."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager

from app.main import create_app
from tests.fixtures.app import make_settings

# No test here writes rows, but `client` asks each test to name what it empties.
pytestmark = pytest.mark.usefixtures("clean_database")

PAGES = ["/docs", "/redoc"]
_REFERENCES = re.compile(r'(?:src|href)="([^"]+)"')
_INLINE_SCRIPTS = re.compile(r"<script>(.*?)</script>", re.DOTALL)


async def _client_for(database_url: str, **overrides: object) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(database_url, **overrides))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


def _directives(policy: str) -> dict[str, list[str]]:
    parsed = {}
    for directive in policy.split(";"):
        name, *values = directive.split()
        parsed[name] = values
    return parsed


@pytest.mark.parametrize("page", PAGES)
async def test_a_docs_page_and_everything_it_loads_come_from_the_app(
    client: httpx.AsyncClient, page: str
) -> None:
    response = await client.get(page)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    references = _REFERENCES.findall(response.text)
    assert references  # the bundle, and for Swagger UI its stylesheet
    for url in references:
        assert url.startswith("/docs/assets/"), url
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 1000, url
    assert "http://" not in response.text
    assert "https://" not in response.text


@pytest.mark.parametrize("page", PAGES)
async def test_a_docs_page_admits_its_own_inline_script_by_hash_and_nothing_else(
    client: httpx.AsyncClient, page: str
) -> None:
    response = await client.get(page)
    # The page's own policy, not the API's (a response carries one, or browsers enforce both).
    assert len(response.headers.get_list("content-security-policy")) == 1
    policy = _directives(response.headers["content-security-policy"])

    scripts = _INLINE_SCRIPTS.findall(response.text)
    hashes = {
        f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
        for s in scripts
    }
    assert set(policy["script-src"]) == {"'self'", *hashes}
    assert policy["default-src"] == ["'none'"]
    assert policy["connect-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    for values in policy.values():
        assert not any(value.startswith("http") or value == "*" for value in values)


async def test_the_schema_is_served_for_generators(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")

    assert response.status_code == 200
    assert response.json()["info"]["title"] == "Task API"


async def test_the_docs_can_be_turned_off_and_the_schema_stays(database_url: str) -> None:
    async for http in _client_for(database_url, docs_enabled=False):
        pages = [await http.get(path) for path in [*PAGES, "/docs/assets/swagger-ui.css"]]
        schema = await http.get("/openapi.json")

    assert [page.status_code for page in pages] == [404, 404, 404]
    assert pages[0].json()["code"] == "not_found"
    assert schema.status_code == 200


async def test_the_schema_can_be_turned_off_with_the_docs(database_url: str) -> None:
    async for http in _client_for(database_url, docs_enabled=False, openapi_enabled=False):
        responses = [await http.get(path) for path in ["/openapi.json", *PAGES]]
        health = await http.get("/health")

    assert [response.status_code for response in responses] == [404, 404, 404]
    assert health.status_code == 200
