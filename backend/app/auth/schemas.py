from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import asyncpg
import email_validator
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from app.auth.models import EMAIL_MAX_LENGTH, NAME_MAX_LENGTH
from app.http.schemas import NUL_FREE, RequestBody, reject_nul

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128


def _normalise_email(value: str) -> str:
    """Syntax only (no DNS), any domain a mail system may use, compared case-insensitively:
    stored and looked up in lower case."""
    try:
        # test_environment only lifts the ban on "*.test" domains (and DNS checks, which
        # are off anyway): the schema's "format: email" admits them.
        validated = email_validator.validate_email(
            value, check_deliverability=False, globally_deliverable=False, test_environment=True
        )
    except email_validator.EmailNotValidError as exc:
        raise ValueError(str(exc)) from None  # a sentence: "The email address is not valid..."
    return validated.normalized.lower()


Email = Annotated[
    str,
    Field(max_length=EMAIL_MAX_LENGTH, json_schema_extra={"format": "email"}),
    AfterValidator(_normalise_email),
]
# Constraints before the validators, as in tasks/schemas.py: pydantic then checks them as string
# lengths ("at least 8 characters"), not as a generic size ("at least 8 items").
Password = Annotated[
    str,
    StringConstraints(min_length=PASSWORD_MIN_LENGTH, max_length=PASSWORD_MAX_LENGTH),
    AfterValidator(reject_nul),
    NUL_FREE,
]
# Any length is checked against the hash; only the upper bound guards the hasher.
PasswordAttempt = Annotated[
    str,
    StringConstraints(min_length=1, max_length=PASSWORD_MAX_LENGTH),
    AfterValidator(reject_nul),
    NUL_FREE,
    Field(json_schema_extra={"format": "password"}),
]
Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=NAME_MAX_LENGTH),
    AfterValidator(reject_nul),
    NUL_FREE,
]


class SignupRequest(RequestBody):
    email: Email
    password: Password
    name: Name | None = None


class LoginRequest(RequestBody):
    email: Email
    password: PasswordAttempt


class TokenRequestForm(RequestBody):
    """The OAuth2 password grant (RFC 6749 section 4.3), as Swagger UI's Authorize sends it:
    ``username`` is the email."""

    username: Email
    password: PasswordAttempt
    grant_type: Literal["password"] = "password"
    scope: str = Field("", description="Ignored: a token grants everything the user owns")

    def as_login(self) -> LoginRequest:
        return LoginRequest(email=self.username, password=self.password)


class UserRead(BaseModel):
    @classmethod
    def from_row(cls, row: asyncpg.Record) -> UserRead:
        """Only this model's fields from a row (the login lookup's also holds the hash)."""
        return cls.model_validate({name: row[name] for name in cls.model_fields})

    id: uuid.UUID
    email: str
    name: str | None
    created_at: datetime


class TokenResponse(BaseModel):
    # Always sent, so required in the published schema (a default would make it optional).
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int = Field(description="Seconds until the token expires")
    user: UserRead
