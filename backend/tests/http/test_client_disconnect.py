"""A client that goes away before its body has arrived is not a server error: no traceback, no
500, and the access line says 499 ("client closed request")."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from fastapi import Request

from app.main import create_app
from tests.fixtures.app import make_settings
from tests.fixtures.logs import LogOutput

Asgi = Any


@pytest.fixture(scope="module")
async def app(database_url: str) -> AsyncIterator[Asgi]:
    application = create_app(make_settings(database_url))

    async def read_raw(request: Request) -> None:
        await request.json()  # reads the body itself: a disconnect reaches the middleware raw

    application.add_api_route("/test/raw-body", read_raw, methods=["POST"])
    async with LifespanManager(application) as manager:
        yield manager.app


async def send_half_a_body(app: Asgi, path: str, content_type: bytes, part: bytes) -> list[Any]:
    """What the server would do: part of the body, then the client's disconnect."""
    incoming = [{"type": "http.request", "body": part, "more_body": True}]
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [(b"host", b"test"), (b"content-type", content_type), (b"content-length", b"500")]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    return sent


@pytest.mark.parametrize(
    ("path", "content_type", "part"),
    [
        ("/api/auth/login", b"application/json", b'{"email": "a@example.com", "pass'),
        ("/api/auth/token", b"application/x-www-form-urlencoded", b"username=a%40example.com&p"),
        ("/api/auth/signup", b"application/json", b'{"email": "a@exam'),
        ("/test/raw-body", b"application/json", b'{"half": '),
    ],
    ids=["login-json", "token-form", "signup", "raw-body"],
)
async def test_a_vanished_client_is_logged_as_499_without_an_error(
    app: Asgi, log_output: LogOutput, path: str, content_type: bytes, part: bytes
) -> None:
    sent = await send_half_a_body(app, path, content_type, part)

    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] == 499  # to no one: the access line's and the metrics' status
    [line] = log_output.records(logger="app.access")
    assert (line["path"], line["status"]) == (path, 499)
    [gone] = log_output.records(event="client_disconnected")
    assert gone["level"] == "info"
    assert gone["request_id"] == line["request_id"]
    assert log_output.records(level="error") == []
    assert "Traceback" not in log_output.text
