"""The answer to an exception nothing else handled (pure ASGI): a generic 500 with our error
body, produced inside the CORS layer so a browser can read it."""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.http.errors import AppError
from app.http.handlers import client_gone_response, error_response

logger = structlog.get_logger("app.errors")


@dataclass(slots=True)
class LastResortErrorMiddleware:
    app: ASGIApp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response_started = False

        async def send_tracked(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_tracked)
        except ClientDisconnect:
            # The client went away mid-body: not a server error, and no one to answer.
            if not response_started:
                await client_gone_response()(scope, receive, send)
        except Exception:
            # Handled here, not by Starlette's outermost error middleware, so the traceback
            # line still carries request_id and the 500 still gets X-Request-ID and CORS.
            logger.error("unhandled_error", exc_info=True)
            if response_started:
                raise  # too late for an error response; the server closes the connection
            await error_response(AppError())(scope, receive, send)
