from __future__ import annotations

import unicodedata
import uuid
from datetime import datetime
from typing import Annotated, Literal

import asyncpg
import email_validator
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from app.auth.models import EMAIL_MAX_LENGTH, NAME_MAX_LENGTH
from app.auth.passwords import PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH, weakness
from app.http.schemas import SECRET, SINGLE_LINE, RequestBody
from app.lists.schemas import ListRead
from app.tasks.schemas import TaskRead


def _fold(local_part: str) -> str:
    """NFKC, then case folding (so "ß" is "ss"), then lower case: what PostgreSQL's lower()
    leaves alone, as the email_lowercase check asks (case folding maps Cherokee to capitals)."""
    return unicodedata.normalize(
        "NFKC", unicodedata.normalize("NFKC", local_part).casefold()
    ).lower()


def canonical_email(value: str) -> str:
    """The one spelling an address is stored and looked up under, so look-alikes are one
    account: NFKC (full-width letters become ASCII), the local part case-folded, the domain as
    IDNA maps it (UTS 46: lower case, "xn--" labels shown in Unicode, "ß" kept: it is another
    domain). Syntax only (no DNS), any domain a mail system may use."""
    local_part, at, domain = unicodedata.normalize("NFKC", value).rpartition("@")
    try:
        # test_environment only lifts the ban on "*.test" domains (and DNS checks, which
        # are off anyway): the schema's "format: email" admits them.
        validated = email_validator.validate_email(
            f"{_fold(local_part)}{at}{domain}" if at else value,
            check_deliverability=False,
            globally_deliverable=False,
            test_environment=True,
        )
    except email_validator.EmailNotValidError as exc:
        raise ValueError(str(exc)) from None  # a sentence: "The email address is not valid..."
    return validated.normalized


Email = Annotated[
    str,
    Field(max_length=EMAIL_MAX_LENGTH, json_schema_extra={"format": "email"}),
    AfterValidator(canonical_email),
]
# Constraints before the text rules, as in tasks/schemas.py: pydantic then checks them as string
# lengths ("at least 8 characters"), not as a generic size ("at least 8 items").
Password = Annotated[
    str,
    StringConstraints(min_length=PASSWORD_MIN_LENGTH, max_length=PASSWORD_MAX_LENGTH),
    SECRET,
    Field(
        description="8 to 128 characters. Not a common password, not the email or little more, "
        "not a run of repeated or consecutive characters (422 with type password_common, "
        "password_email or password_pattern). Compared and stored in Unicode NFKC form."
    ),
]
# Any length is checked against the hash; only the upper bound guards the hasher.
PasswordAttempt = Annotated[
    str,
    StringConstraints(min_length=1, max_length=PASSWORD_MAX_LENGTH),
    SECRET,
    Field(json_schema_extra={"format": "password"}),
]
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=NAME_MAX_LENGTH),
    SINGLE_LINE,
]


IncludeRefreshToken = Annotated[
    bool,
    Field(
        description="Return the refresh token in the body too, for clients that are not "
        "browsers; browsers get it only in the HttpOnly cookie"
    ),
]


class SignupRequest(RequestBody):
    email: Email
    password: Password
    name: Name | None = None
    include_refresh_token: IncludeRefreshToken = False

    @field_validator("password")
    @classmethod
    def _refuse_weak_passwords(cls, password: str, info: ValidationInfo) -> str:
        # Sign-up only: login verifies whatever was stored, under any earlier policy. The email
        # is declared first, so it is validated (and normalised) by now, or absent if invalid.
        found = weakness(password, info.data.get("email"))
        if found is not None:
            # min_length: the context validation.py's sentence for string_too_short reads.
            raise PydanticCustomError(
                found.type, found.message, {"min_length": PASSWORD_MIN_LENGTH}
            )
        return password


class LoginRequest(RequestBody):
    email: Email
    password: PasswordAttempt
    include_refresh_token: IncludeRefreshToken = False


class TokenRequestForm(RequestBody):
    """The OAuth2 password grant (RFC 6749 section 4.3), as Swagger UI's Authorize sends it:
    ``username`` is the email."""

    username: Email
    password: PasswordAttempt
    grant_type: Literal["password"] = "password"
    scope: str = Field("", description="Ignored: a token grants everything the user owns")

    def as_login(self) -> LoginRequest:
        # The OAuth2 token response carries the refresh token (RFC 6749 section 5.1).
        return LoginRequest(email=self.username, password=self.password, include_refresh_token=True)


class PasswordChangeRequest(RequestBody):
    current_password: PasswordAttempt
    # Checked by the sign-up policy against the account's email too, once the account is
    # loaded (AuthService.change_password): a refusal is the same 422 item signup gives.
    new_password: Password


class AccountDeletionRequest(RequestBody):
    password: PasswordAttempt


class UserRead(BaseModel):
    @classmethod
    def from_row(cls, row: asyncpg.Record) -> UserRead:
        """Only this model's fields from a row (the login lookup's also holds the hash)."""
        return cls.model_validate({name: row[name] for name in cls.model_fields})

    id: uuid.UUID
    email: str
    name: str | None
    created_at: datetime


AccessToken = Annotated[
    str, Field(description="Send as `Authorization: Bearer <token>`; renew it at /api/auth/refresh")
]
ExpiresIn = Annotated[int, Field(description="Seconds until the access token expires")]
RefreshToken = Annotated[
    str | None,
    Field(
        description="Only when the request asked for it (include_refresh_token, or a refresh "
        "with the token in the body); otherwise null and in the HttpOnly cookie"
    ),
]


class TokenResponse(BaseModel):
    # Always sent, so required in the published schema (a default would make it optional).
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    access_token: AccessToken
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: ExpiresIn
    refresh_token: RefreshToken = None
    user: UserRead


class SignupResponse(UserRead):
    """The new account (as before sessions, so older clients read it unchanged) and the
    tokens of the session signup started."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    access_token: AccessToken
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: ExpiresIn
    refresh_token: RefreshToken = None


class ExportedList(ListRead):
    position: str | None = Field(description="null for a deleted list")  # type: ignore[assignment]
    deleted_at: datetime | None


class ExportedTask(TaskRead):
    position: str | None = Field(description="null in the trash")  # type: ignore[assignment]
    deleted_at: datetime | None = Field(description="When it went to the trash")


class AccountExport(BaseModel):
    """The export's document (GET /api/auth/me/export), streamed (auth/export.py); documents
    the bytes, never built as a model."""

    user: UserRead
    lists: list[ExportedList] = Field(description="Every list of the user, deleted ones too")
    tasks: list[ExportedTask] = Field(description="Every task of the user, oldest first")
    exported_at: datetime = Field(description="When the snapshot the document shows was taken")
