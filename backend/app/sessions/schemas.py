from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, RootModel, StringConstraints

from app.http.schemas import RequestBody

RefreshTokenText = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200),
    Field(description="A refresh token from login, signup or a previous refresh"),
]


class RefreshRequest(RequestBody):
    """For clients that are not browsers: the refresh token in the body instead of the cookie.
    Browsers send no body; their token travels in the HttpOnly cookie."""

    refresh_token: RefreshTokenText


class SessionRead(BaseModel):
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    id: uuid.UUID
    created_at: datetime
    last_used_at: datetime = Field(description="The last login or refresh of this session")
    expires_at: datetime = Field(description="The absolute end; idle sessions end sooner")
    user_agent: str | None
    address: str | None = Field(
        description="Where it was started, truncated to a network (IPv4 /24, IPv6 /48)"
    )
    current: bool = Field(False, description="The session of the token that asked")


class SessionList(RootModel[list[SessionRead]]):
    """The user's usable sessions, the most recently used first (a JSON array)."""
