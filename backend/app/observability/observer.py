"""The request observer (pure ASGI): one clock and one status capture per request for both the
access line and the metrics, and the request id bound to every log line and echoed back."""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.observability.metrics import UNMATCHED_ROUTE, Metrics

REQUEST_ID_HEADER = b"x-request-id"
MAX_LOGGED_PATH = 1024
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

access_logger = structlog.get_logger("app.access")


@dataclass(slots=True)
class RequestObserverMiddleware:
    app: ASGIApp
    metrics: Metrics | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or secrets.token_hex(16)
        structlog.contextvars.clear_contextvars()
        client = scope.get("client")
        # The address uvicorn resolved (the peer, or X-Forwarded-For from a trusted proxy): on
        # every line, so a security event decided deep in a repository says where it came from.
        structlog.contextvars.bind_contextvars(
            request_id=request_id, client_address=client[0] if client else None
        )
        start = time.perf_counter()
        status = 500  # unless a response starts: an exception escaped even the last resort

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (REQUEST_ID_HEADER, request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        finally:
            seconds = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", None)
            access_logger.info(
                "request",
                method=scope["method"],
                path=_bounded(scope["path"]),
                route=route,
                status=status,
                duration_ms=round(seconds * 1000, 2),
            )
            if self.metrics is not None:
                self.metrics.observe(scope["method"], route or UNMATCHED_ROUTE, status, seconds)
            structlog.contextvars.clear_contextvars()


def _bounded(path: str) -> str:
    # The path is the client's to choose: what the line carries (and redaction scans) is capped.
    if len(path) <= MAX_LOGGED_PATH:
        return path
    return f"{path[:MAX_LOGGED_PATH]}...[{len(path) - MAX_LOGGED_PATH} more characters]"


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            candidate = value.decode("latin-1")
            # Only well-formed ids are echoed: a header is no place for log injection.
            return candidate if _VALID_REQUEST_ID.match(candidate) else None
    return None
