"""CORS for the configured origins (pure ASGI), in credentials mode only on the auth routes that
set or read the refresh cookie.

Every other route authenticates with a bearer token and has no use for cookies, so it keeps
answering without ``Access-Control-Allow-Credentials``: a credentialed cross-origin request
there stays unreadable. The CORS rules themselves are Starlette's: two ``CORSMiddleware``
instances, one with credentials, chosen by path (a set lookup) and, on those few paths, by
whether the origin is allowed (Starlette would send its credentials header to any origin).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

# The routes that set or read the HttpOnly refresh cookie (Path=/api/auth).
CREDENTIALED_PATHS = frozenset(
    {"/api/auth/login", "/api/auth/signup", "/api/auth/refresh", "/api/auth/logout"}
)
ALLOW_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
MAX_AGE_SECONDS = 600


@dataclass(slots=True)
class CrossOriginMiddleware:
    app: ASGIApp
    origins: Sequence[str]
    allow_headers: Sequence[str]
    expose_headers: Sequence[str]
    credentialed_paths: Collection[str]
    _paths: frozenset[str] = field(init=False)
    _plain: CORSMiddleware = field(init=False)
    _credentialed: CORSMiddleware = field(init=False)

    def __post_init__(self) -> None:
        # With credentials, Starlette answers '*' by echoing whatever origin asks.
        if "*" in self.origins:
            raise ValueError("'*' is not an origin; list the SPA's origins explicitly")
        self._paths = frozenset(self.credentialed_paths)
        self._plain, self._credentialed = (
            CORSMiddleware(
                self.app,
                allow_origins=self.origins,
                allow_methods=ALLOW_METHODS,
                allow_headers=self.allow_headers,
                allow_credentials=credentials,
                expose_headers=self.expose_headers,
                max_age=MAX_AGE_SECONDS,
            )
            for credentials in (False, True)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in self._paths and self._allowed(scope):
            await self._credentialed(scope, receive, send)
        else:
            await self._plain(scope, receive, send)

    def _allowed(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"origin":  # the first, as Starlette reads it
                return self._credentialed.is_allowed_origin(value.decode("latin-1"))
        return False
