"""Cap request bodies (pure ASGI): 413 before the app buffers more than the configured size."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.http.errors import PayloadTooLargeError
from app.http.handlers import error_response


@dataclass(slots=True)
class BodySizeLimitMiddleware:
    app: ASGIApp
    max_bytes: int

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            # Refused from the header alone, before a byte of the body is read.
            await error_response(PayloadTooLargeError())(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:  # chunked, or a lying Content-Length
                    # An HTTPException: FastAPI's body parsing re-raises those unchanged (any
                    # other error there becomes a 400) and the error handler renders it.
                    raise HTTPException(status_code=413, detail=PayloadTooLargeError.message)
            return message

        await self.app(scope, counting_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
