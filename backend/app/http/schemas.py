"""Building blocks for request bodies shared by every domain."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


def reject_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL; reject it as bad input instead of failing in the driver.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


# Documents the rule in OpenAPI, so clients (and fuzzers) know NUL is refused.
NUL_FREE = Field(json_schema_extra={"pattern": "^[^\\x00]*$"})


def _without_null(schema: dict[str, Any]) -> None:
    [published] = [branch for branch in schema.pop("anyOf") if branch != {"type": "null"}]
    schema.update(published)
    if "default" in schema and schema["default"] is None:  # absent means unchanged, not null
        del schema["default"]


# For an optional field that may be absent but not null (a validator refuses the null): the
# schema offers no null to send, while the type stays `X | None`, which pydantic reports as one
# error at the field's own location (a union would report one per member).
NOT_NULLABLE = Field(json_schema_extra=_without_null)


class RequestBody(BaseModel):
    """Unknown fields (``id``, ``user_id``, ``created_at``...) are ignored, never applied."""

    # strict: a JSON 0 is not a boolean and 1 is not a string; what the schema says is what
    # is accepted.
    model_config = ConfigDict(extra="ignore", strict=True)
