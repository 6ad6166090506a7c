"""How a refresh token travels: an HttpOnly cookie for browsers (guarded against cross-site
requests), or the JSON body for every other client."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from fastapi import Request, Response

from app.http.errors import ValidationFailedError
from app.sessions.errors import CsrfRejectedError, InvalidRefreshTokenError
from app.sessions.refresh_tokens import PresentedToken, parse
from app.sessions.repository import SessionGrant
from app.sessions.schemas import RefreshRequest
from app.settings import Settings

REFRESH_COOKIE = "refresh_token"
# Sent only to the routes that read it, never with the task routes' requests.
REFRESH_COOKIE_PATH = "/api/auth"
# A header a cross-site HTML form cannot send, and a cross-origin script only after a CORS
# preflight that only the configured origins pass.
CSRF_HEADER = "x-requested-with"


@dataclass(frozen=True)
class RefreshCookie:
    samesite: Literal["Strict", "Lax", "None"]
    secure: bool
    # Origins whose pages may use the cookie besides the API's own (CORS_ORIGINS).
    allowed_origins: frozenset[str]

    @classmethod
    def from_settings(cls, settings: Settings) -> RefreshCookie:
        samesite = settings.refresh_cookie_samesite.capitalize()
        return cls(samesite, settings.refresh_cookie_secure, frozenset(settings.cors_origins))  # type: ignore[arg-type]

    def set(self, response: Response, grant: SessionGrant) -> None:
        max_age = int((grant.expires_at - datetime.now(UTC)).total_seconds())
        response.set_cookie(
            REFRESH_COOKIE,
            grant.refresh_token,
            max_age=max(0, max_age),
            path=REFRESH_COOKIE_PATH,
            secure=self.secure,
            httponly=True,
            # Starlette writes the value as given; capitalised as RFC 6265bis spells it.
            samesite=self.samesite,  # type: ignore[arg-type]
        )

    def clear(self, response: Response) -> None:
        response.delete_cookie(
            REFRESH_COOKIE,
            path=REFRESH_COOKIE_PATH,
            secure=self.secure,
            httponly=True,
            # Starlette writes the value as given; capitalised as RFC 6265bis spells it.
            samesite=self.samesite,  # type: ignore[arg-type]
        )

    def clearing_headers(self) -> dict[str, str]:
        """The Set-Cookie that clears it, for an error response."""
        response = Response()
        self.clear(response)
        return {"Set-Cookie": response.headers["set-cookie"]}

    def check_same_site(self, request: Request) -> None:
        """Refuse a cookie-authenticated request that a cross-site page could have made."""
        if not request.headers.get(CSRF_HEADER):
            raise CsrfRejectedError()
        origin = request.headers.get("origin")
        if origin is None:
            # Browsers send Origin on every cross-origin POST; a request without it is
            # same-origin or not from a browser, unless Fetch Metadata says otherwise.
            if request.headers.get("sec-fetch-site") == "cross-site":
                raise CsrfRejectedError()
            return
        if origin in self.allowed_origins:
            return
        # The browser's own word (a page cannot set Sec-Fetch-* headers), and the only one that
        # holds behind a proxy that rewrites Host or the scheme; else Origin against this
        # request's own scheme and Host.
        if request.headers.get("sec-fetch-site") == "same-origin":
            return
        if origin != f"{request.url.scheme}://{request.headers.get('host', '')}":
            raise CsrfRejectedError()


@dataclass(frozen=True, slots=True)
class PresentedRefresh:
    token: PresentedToken
    via_cookie: bool

    @contextmanager
    def clearing_the_cookie_if_refused(self, cookie: RefreshCookie) -> Iterator[None]:
        """A cookie whose token was refused is cleared with the 401, so the browser stops
        sending it."""
        try:
            yield
        except InvalidRefreshTokenError as error:
            if self.via_cookie:
                error.headers.update(cookie.clearing_headers())
            raise


async def refuse_a_null_body(request: Request, body: RefreshRequest | None) -> None:
    """FastAPI reads a JSON ``null`` as no body at all; the schema offers an object or
    nothing, and so does the route."""
    if body is None and (await request.body()).strip():
        raise ValidationFailedError(
            'The body must be a JSON object with "refresh_token", or empty.'
        )


def read_refresh_token(
    request: Request, body: RefreshRequest | None, cookie: RefreshCookie
) -> PresentedRefresh:
    """The refresh token from the body if one is there, else from the cookie (then only from
    a same-site request). A malformed token is refused before any lookup."""
    if body is not None:
        presented = parse(body.refresh_token)
        if presented is None:
            raise InvalidRefreshTokenError()
        return PresentedRefresh(presented, via_cookie=False)
    value = request.cookies.get(REFRESH_COOKIE)
    if value is None:
        raise InvalidRefreshTokenError()
    cookie.check_same_site(request)
    presented = parse(value)
    if presented is None:
        raise InvalidRefreshTokenError(headers=cookie.clearing_headers())
    return PresentedRefresh(presented, via_cookie=True)
