"""Building blocks for request bodies shared by every domain."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


def reject_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL; reject it as bad input instead of failing in the driver.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


# Documents the rule in OpenAPI, so clients (and fuzzers) know NUL is refused.
NUL_FREE = Field(json_schema_extra={"pattern": "^[^\\x00]*$"})
SafeStr = Annotated[str, AfterValidator(reject_nul), NUL_FREE]


class RequestBody(BaseModel):
    """Unknown fields (``id``, ``user_id``, ``created_at``...) are ignored, never applied."""

    # strict: a JSON 0 is not a boolean and 1 is not a string; what the schema says is what
    # is accepted.
    model_config = ConfigDict(extra="ignore", strict=True)
