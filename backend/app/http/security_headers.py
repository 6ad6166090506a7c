"""Response headers every answer of this API carries (pure ASGI)."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Responses are per user (or live probes): never stored by browsers or shared caches.
    "Cache-Control": "no-store",
    # JSON never needs to load or run anything; the docs pages send a policy of their own.
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}
# As ASGI carries them: lowercase names, bytes.
_RAW_HEADERS = [(name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS.items()]


@dataclass(slots=True)
class SecurityHeadersMiddleware:
    app: ASGIApp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name for name, _ in headers}  # a route's own value wins
                headers += [header for header in _RAW_HEADERS if header[0] not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
