"""Refresh, logout, and the user's list of sessions (README "Authentication and sessions")."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response, status

from app.auth.deps import TokenClaimsDep, get_token_codec, token_claims
from app.auth.errors import AuthenticationError
from app.auth.repository import user_gone
from app.auth.schemas import TokenResponse, UserRead
from app.db.deps import DatabaseDep
from app.http.errors import error_responses
from app.sessions.deps import SessionConfigDep, SessionStoreDep
from app.sessions.repository import EndReason, SessionRepository
from app.sessions.schemas import RefreshRequest, SessionList, SessionRead
from app.sessions.transport import REFRESH_COOKIE, read_refresh_token, refuse_a_null_body

router = APIRouter(prefix="/api/auth", tags=["sessions"])

FROM_COOKIE_OR_BODY = (
    " Browsers send no body: the token is the `refresh_token` cookie, and the request must "
    "carry `X-Requested-With` and come from the API's own origin or a configured one (403 "
    '`csrf_rejected` otherwise). Other clients send `{"refresh_token": ...}`.'
)


@router.post(
    "/refresh",
    responses=error_responses(
        401,
        403,
        413,
        422,
        503,
        descriptions={
            401: "`invalid_refresh_token` (log in again) or `refresh_token_reused` (the "
            "session was ended)"
        },
    ),
    description="Rotate the refresh token: it is spent, a new one is set (cookie) or returned "
    "(body), with a new access token. A spent token presented again ends the session, except "
    "within a short grace window, in which concurrent tabs all receive the same new token."
    + FROM_COOKIE_OR_BODY,
)
async def refresh(
    request: Request,
    response: Response,
    store: SessionStoreDep,
    config: SessionConfigDep,
    body: RefreshRequest | None = None,
) -> TokenResponse:
    await refuse_a_null_body(request, body)
    presented = read_refresh_token(request, body, config.cookie)
    with presented.clearing_the_cookie_if_refused(config.cookie):
        grant = await store.refresh(presented.token)
    assert grant.user is not None  # a refresh reads the account with the session
    user = UserRead.from_row(grant.user)
    codec = await get_token_codec(request)
    access = codec.issue(user.id, grant.session_id, not_after=grant.expires_at)
    if presented.via_cookie:
        config.cookie.set(response, grant)
    return TokenResponse(
        access_token=access.value,
        expires_in=access.expires_in,
        refresh_token=None if presented.via_cookie else grant.refresh_token,
        user=user,
    )


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(401, 403, 413, 422, 503),
    description="End the current session: the one of the bearer token if one is sent, else "
    "the one of the refresh token. Its access tokens stop working on every process within a "
    "second, and the cookie is cleared. Ending a session that already ended is not an error."
    + FROM_COOKIE_OR_BODY,
)
async def logout(
    request: Request,
    store: SessionStoreDep,
    config: SessionConfigDep,
    database: DatabaseDep,
    body: RefreshRequest | None = None,
) -> Response:
    await refuse_a_null_body(request, body)
    has_refresh_token = body is not None or REFRESH_COOKIE in request.cookies
    claims = None
    if "authorization" in request.headers:
        try:
            claims = await token_claims(request)
        except AuthenticationError:
            # An expired (or ended) access token: the refresh token, if any, still says which
            # session to end.
            if not has_refresh_token:
                raise
    if claims is not None:
        repository = SessionRepository(database, claims.subject, config.policy)
        await repository.end(claims.session_id, EndReason.LOGOUT, missing_ok=True)
    elif has_refresh_token:
        presented = read_refresh_token(request, body, config.cookie)
        with presented.clearing_the_cookie_if_refused(config.cookie):
            await store.end_by_token(presented.token, EndReason.LOGOUT)
    else:
        raise AuthenticationError()
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    config.cookie.clear(response)
    return response


@router.get("/sessions", responses=error_responses(401, 503))
async def list_sessions(
    claims: TokenClaimsDep, database: DatabaseDep, config: SessionConfigDep
) -> SessionList:
    """The user's sessions that can still be used, the most recently used first; the caller's
    own is `current: true`. Last used means the last login or refresh."""
    rows = await SessionRepository(database, claims.subject, config.policy).list()
    if not rows:
        # The caller's own session is always listed, so none means the account is gone.
        raise user_gone(claims.subject)
    return SessionList(
        [SessionRead(**{**row, "current": row["id"] == claims.session_id}) for row in rows]
    )


@router.delete(
    "/sessions/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(401, 404, 503),
)
async def end_session(
    session_id: uuid.UUID, claims: TokenClaimsDep, database: DatabaseDep, config: SessionConfigDep
) -> None:
    """End one of the user's sessions (the caller's own too: that is a logout). Its access
    tokens stop working on every process within a second."""
    repository = SessionRepository(database, claims.subject, config.policy)
    await repository.end(session_id, EndReason.ENDED_BY_USER)


@router.delete(
    "/sessions", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(401, 503)
)
async def end_other_sessions(
    claims: TokenClaimsDep, database: DatabaseDep, config: SessionConfigDep
) -> None:
    """End every session of the user except the caller's."""
    repository = SessionRepository(database, claims.subject, config.policy)
    await repository.end_others(claims.session_id, EndReason.ENDED_BY_USER)
