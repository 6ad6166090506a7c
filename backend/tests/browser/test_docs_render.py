"""/docs and /redoc in a real browser that can reach nothing but the API's own origin: the pages
render every operation, so nothing they need comes from a CDN, and their CSP blocks nothing
they need."""

from __future__ import annotations

import httpx
import pytest

from tests.fixtures.browser import Chromium
from tests.fixtures.processes import AppServer

# A server process and a browser per module: scheduled first (see conftest.py).
pytestmark = pytest.mark.slow

OPERATION_IDS = ("list_tasks", "create_task", "toggle_task", "login", "token", "me")


def test_swagger_ui_renders_every_operation_offline(
    chromium: Chromium, browser_api: AppServer
) -> None:
    rendered = chromium.render(f"{browser_api.base_url}/docs")

    assert 'id="swagger-ui"' in rendered.dom
    schema = httpx.get(f"{browser_api.base_url}/openapi.json").json()
    operations = sum(len(path_item) for path_item in schema["paths"].values())
    assert rendered.dom.count('class="opblock opblock-') == operations  # one per operation
    for operation_id in OPERATION_IDS:
        assert operation_id in rendered.dom, operation_id
    assert [line for line in rendered.console if "Content Security Policy" in line] == []


def test_redoc_renders_every_operation_offline(chromium: Chromium, browser_api: AppServer) -> None:
    rendered = chromium.render(f"{browser_api.base_url}/redoc")

    for operation_id in OPERATION_IDS:
        assert f"operation/{operation_id}" in rendered.dom, operation_id
    # ReDoc's footer links its logo from its CDN: the one thing the policy blocks, and nothing
    # the page needs.
    blocked = [line for line in rendered.console if "Content Security Policy" in line]
    assert all("cdn.redoc.ly" in line and "img-src" in line for line in blocked), blocked
