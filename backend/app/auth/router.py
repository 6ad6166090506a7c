from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, Response, status

from app.auth.deps import (
    AuthServiceDep,
    CurrentUser,
    ExportSlotsDep,
    LoginAddress,
    TokenClaimsDep,
    TokenSubject,
    client_address,
    count_signup_attempt,
    user_agent,
)
from app.auth.export import CONTENT_DISPOSITION, ExportResponse, export_document
from app.auth.schemas import (
    AccountDeletionRequest,
    AccountExport,
    LoginRequest,
    PasswordChangeRequest,
    SignupRequest,
    SignupResponse,
    TokenRequestForm,
    TokenResponse,
    UserRead,
)
from app.auth.service import Login
from app.db.deps import DatabaseDep
from app.http.errors import error_responses
from app.sessions.deps import SessionConfigDep

router = APIRouter(prefix="/api/auth", tags=["auth"])

BAD_CREDENTIALS = error_responses(
    401, 413, 422, 429, 503, descriptions={401: "Incorrect email or password"}
)
SETS_THE_COOKIE = (
    " Starts a session: the refresh token is set in the `refresh_token` cookie (HttpOnly, "
    "Secure, Path=/api/auth), and in the body too if `include_refresh_token` is true."
)


@router.post(
    "/signup",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(count_signup_attempt)],
    responses=error_responses(409, 413, 422, 429, 503),
    description="Create an account and sign in. Emails are compared normalised (case, width, "
    "IDNA). Passwords are 8 to 128 characters and not a common password, the email, or a "
    "repeated or sequential run." + SETS_THE_COOKIE,
)
async def signup(
    body: SignupRequest,
    request: Request,
    response: Response,
    service: AuthServiceDep,
    sessions: SessionConfigDep,
) -> SignupResponse:
    login = await service.sign_up(body, client_address(request), user_agent(request))
    sessions.cookie.set(response, login.session)
    return SignupResponse(
        **login.user.model_dump(),
        access_token=login.access_token.value,
        expires_in=login.access_token.expires_in,
        refresh_token=login.session.refresh_token if body.include_refresh_token else None,
    )


@router.post(
    "/login",
    responses=BAD_CREDENTIALS,
    description="Exchange email and password for an access token." + SETS_THE_COOKIE,
)
async def login(
    body: LoginRequest,
    request: Request,
    response: Response,
    service: AuthServiceDep,
    address: LoginAddress,
    sessions: SessionConfigDep,
) -> TokenResponse:
    login = await service.log_in(body, address, user_agent(request))
    sessions.cookie.set(response, login.session)
    return token_response(login, include_refresh_token=body.include_refresh_token)


@router.post("/token", responses=BAD_CREDENTIALS)
async def token(
    form: Annotated[TokenRequestForm, Form()],
    request: Request,
    service: AuthServiceDep,
    address: LoginAddress,
) -> TokenResponse:
    """The OAuth2 password grant, as a form (``username`` is the email): the ``tokenUrl`` of
    the security scheme, so the Authorize button of ``/docs`` works. Same answers as login;
    the refresh token comes in the body (no cookie)."""
    login = await service.log_in(form.as_login(), address, user_agent(request))
    return token_response(login, include_refresh_token=True)


@router.get("/me", responses=error_responses(401, 503))
async def me(user: CurrentUser) -> UserRead:
    """The authenticated user."""
    return user


# The routes that ask for the password again: 403 (not 401) when it is wrong, so a client
# does not take it for an ended session; counted like logins.
PASSWORD_CHECKED = error_responses(
    401,
    403,
    413,
    422,
    429,
    503,
    descriptions={
        403: "`wrong_password`: the password is incorrect",
        429: "Too many password attempts (counted with logins); retry after Retry-After seconds",
    },
)


# The bearer token is checked before the attempt is counted (parameters are solved in order),
# so requests without one cost the address nothing.
@router.post(
    "/password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=PASSWORD_CHECKED,
    description="Change the password: `current_password` must be right, `new_password` follows "
    "the sign-up policy (422 with the same error types, at `new_password`). Every other "
    "session of the user ends (their access and refresh tokens stop working); the caller's "
    "session goes on.",
)
async def change_password(
    claims: TokenClaimsDep,
    address: LoginAddress,
    body: PasswordChangeRequest,
    service: AuthServiceDep,
) -> None:
    # The ended sessions' tokens are refused by every process once the sessions' trigger
    # has told them (sessions/revocations.py), within a second.
    await service.change_password(claims, body, address)


@router.delete(
    "/me",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=PASSWORD_CHECKED,
    description="Delete the account, every task of it and every session, after checking the "
    "password. Every token of the account is refused from then on, and the refresh cookie is "
    "cleared.",
)
async def delete_account(
    subject: TokenSubject,
    address: LoginAddress,
    body: AccountDeletionRequest,
    service: AuthServiceDep,
    sessions: SessionConfigDep,
) -> Response:
    await service.delete_account(subject, body.password, address)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    sessions.cookie.clear(response)
    return response


@router.get(
    "/me/export",
    responses={
        200: {
            "model": AccountExport,
            "description": "The document, as an attachment (tasks-export.json)",
            "headers": {
                "Content-Disposition": {
                    "schema": {"type": "string", "example": CONTENT_DISPOSITION},
                    "description": "An attachment named tasks-export.json",
                }
            },
        },
        **error_responses(
            401, 429, 503, descriptions={429: "Too many exports are running in this process"}
        ),
    },
    description="The account and every task of it, oldest first, as one JSON document, "
    "streamed: it is read from one consistent snapshot (`exported_at`) while it is sent, so "
    "however many tasks there are the server never holds them all at once.",
)
async def export_account(
    user: CurrentUser, database: DatabaseDep, slots: ExportSlotsDep
) -> ExportResponse:
    slots.take()
    return ExportResponse(export_document(database, user.id), slots)


def token_response(login: Login, *, include_refresh_token: bool) -> TokenResponse:
    return TokenResponse(
        access_token=login.access_token.value,
        expires_in=login.access_token.expires_in,
        refresh_token=login.session.refresh_token if include_refresh_token else None,
        user=login.user,
    )
