from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from app.auth.deps import AuthServiceDep, CurrentUser, limit_by_client_address
from app.auth.schemas import LoginRequest, SignupRequest, TokenResponse, UserRead
from app.http.errors import error_responses

router = APIRouter(prefix="/api/auth", tags=["auth"])


FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
_LOGIN_JSON_SCHEMA = LoginRequest.model_json_schema()
# The form's fields carry the JSON body's constraints, so the two documented bodies agree.
_EMAIL_FIELD = _LOGIN_JSON_SCHEMA["properties"]["email"]
_PASSWORD_FIELD = _LOGIN_JSON_SCHEMA["properties"]["password"]
LOGIN_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {"schema": _LOGIN_JSON_SCHEMA},
        FORM_CONTENT_TYPE: {
            "schema": {
                "title": "OAuth2PasswordForm",
                "type": "object",
                "required": ["username", "password"],
                "properties": {
                    "username": {
                        **_EMAIL_FIELD,
                        "title": "Username",
                        "description": "The account's email",
                    },
                    "password": {**_PASSWORD_FIELD, "format": "password"},
                    "grant_type": {"type": "string", "enum": ["password"]},
                    "scope": {"type": "string"},
                },
            }
        },
    },
}


@router.post(
    "/signup",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(limit_by_client_address)],
    responses=error_responses(409, 413, 422, 429, 503),
)
async def signup(body: SignupRequest, service: AuthServiceDep) -> UserRead:
    """Create an account. Emails are case-insensitive; passwords are 8 to 128 characters."""
    return await service.sign_up(body)


@router.post(
    "/login",
    openapi_extra={"requestBody": LOGIN_BODY},
    dependencies=[Depends(limit_by_client_address)],
    responses=error_responses(401, 413, 422, 429, 503),
)
async def login(request: Request, service: AuthServiceDep) -> TokenResponse:
    """Exchange email and password for a bearer token.

    Accepts JSON ``{"email", "password"}`` or the OAuth2 password form (``username`` is the
    email), so the Authorize button of ``/docs`` works.
    """
    credentials = await _read_credentials(request)
    user, token = await service.log_in(credentials)
    return TokenResponse(access_token=token.value, expires_in=token.expires_in, user=user)


async def _read_credentials(request: Request) -> LoginRequest:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    is_form = content_type == FORM_CONTENT_TYPE
    try:
        if is_form:
            form = await request.form()
            return LoginRequest.model_validate(
                {"email": form.get("username"), "password": form.get("password")}
            )
        return LoginRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        # Errors name the fields the client sent: the form has `username`, not `email`.
        sent_as = {"email": "username"} if is_form else {}
        raise RequestValidationError(
            [
                {**error, "loc": ("body", *(sent_as.get(str(part), part) for part in error["loc"]))}
                for error in errors
            ]
        ) from None


@router.get("/me", responses=error_responses(401, 503))
async def me(user: CurrentUser) -> UserRead:
    """The authenticated user."""
    return user
