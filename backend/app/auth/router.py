from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, status

from app.auth.deps import AuthServiceDep, CurrentUser, LoginAddress, count_signup_attempt
from app.auth.schemas import LoginRequest, SignupRequest, TokenRequestForm, TokenResponse, UserRead
from app.http.errors import error_responses

router = APIRouter(prefix="/api/auth", tags=["auth"])

BAD_CREDENTIALS = error_responses(
    401, 413, 422, 429, 503, descriptions={401: "Incorrect email or password"}
)


@router.post(
    "/signup",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(count_signup_attempt)],
    responses=error_responses(409, 413, 422, 429, 503),
)
async def signup(body: SignupRequest, service: AuthServiceDep) -> UserRead:
    """Create an account. Emails are compared normalised (case, width, IDNA). Passwords are 8
    to 128 characters and not a common password, the email, or a repeated or sequential run."""
    return await service.sign_up(body)


@router.post("/login", responses=BAD_CREDENTIALS)
async def login(
    body: LoginRequest, service: AuthServiceDep, address: LoginAddress
) -> TokenResponse:
    """Exchange email and password for a bearer token."""
    user, token = await service.log_in(body, address)
    return TokenResponse(access_token=token.value, expires_in=token.expires_in, user=user)


@router.post("/token", responses=BAD_CREDENTIALS)
async def token(
    form: Annotated[TokenRequestForm, Form()], service: AuthServiceDep, address: LoginAddress
) -> TokenResponse:
    """The OAuth2 password grant, as a form (``username`` is the email): the ``tokenUrl`` of
    the security scheme, so the Authorize button of ``/docs`` works. Same answers as login."""
    user, issued = await service.log_in(form.as_login(), address)
    return TokenResponse(access_token=issued.value, expires_in=issued.expires_in, user=user)


@router.get("/me", responses=error_responses(401, 503))
async def me(user: CurrentUser) -> UserRead:
    """The authenticated user."""
    return user
