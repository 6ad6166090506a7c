from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, model_validator
from pydantic.json_schema import SkipJsonSchema

from app.core.schemas import NUL_FREE, RequestBody, reject_nul
from app.tasks.models import DESCRIPTION_MAX_LENGTH, TITLE_MAX_LENGTH

# Constraints go straight on `str`, before any validator: pydantic applies Annotated metadata in
# order, and after a validator it counts the length before stripping and strips after checking,
# which let "   " through as "" and refused 255 characters wrapped in spaces.
Title = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=TITLE_MAX_LENGTH),
    AfterValidator(reject_nul),
    NUL_FREE,
]
Description = Annotated[
    str, StringConstraints(max_length=DESCRIPTION_MAX_LENGTH), AfterValidator(reject_nul), NUL_FREE
]


class TaskCreate(RequestBody):
    title: Title
    description: Description | None = None


class TaskUpdate(RequestBody):
    """PUT: replaces the title; ``description`` omitted keeps it, ``null`` clears it."""

    title: Title
    description: Description | None = None


class TaskPatch(RequestBody):
    """PATCH: only the fields present change. Setting ``completed`` is idempotent."""

    # Absent means "unchanged"; null is refused (and not offered in the schema) for the two
    # columns that cannot be null.
    title: Title | SkipJsonSchema[None] = None
    description: Description | None = None
    completed: bool | SkipJsonSchema[None] = None

    @model_validator(mode="after")
    def _title_and_completed_are_not_nullable(self) -> TaskPatch:
        for field in ("title", "completed"):
            if field in self.model_fields_set and getattr(self, field) is None:
                raise ValueError(f"{field} cannot be null")
        return self


class TaskRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    user_id: uuid.UUID
    title: str
    description: str | None
    completed: bool
    completed_at: datetime | None
    created_at: datetime
    updated_at: datetime
