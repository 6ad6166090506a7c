"""Refuse a request whose Host this service does not answer to (pure ASGI), so the absolute
URLs built from it (Location, Link) cannot point elsewhere. Installed only when ALLOWED_HOSTS
is set."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Receive, Scope, Send

from app.http.errors import AppError, ErrorCode
from app.http.handlers import error_response


class HostNotAllowedError(AppError):
    status_code, code, message = 400, ErrorCode.INVALID_HOST, "This host name is not served here"


@dataclass(slots=True)
class AllowedHostsMiddleware:
    app: ASGIApp
    hosts: Sequence[str]
    _names: frozenset[str] = field(init=False)
    _suffixes: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        self._names = frozenset(host for host in self.hosts if not host.startswith("*."))
        # "*.example.com" admits every subdomain, not example.com itself (list it too for that).
        self._suffixes = tuple(host[1:] for host in self.hosts if host.startswith("*."))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._allows(_host_of(scope)):
            await error_response(HostNotAllowedError())(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _allows(self, host: str) -> bool:
        return host in self._names or (bool(self._suffixes) and host.endswith(self._suffixes))


def _host_of(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"host":
            host: str = value.decode("latin-1").lower()
            # Without the port: "[::1]:8000" -> "[::1]", "api.example.com:443" -> the name.
            return host.rsplit(":", 1)[0] if host.rfind(":") > host.rfind("]") else host
    return ""
