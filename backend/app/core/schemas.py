"""Building blocks for request bodies shared by every domain."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict


def _reject_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL; reject it as bad input instead of failing in the driver.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


SafeStr = Annotated[str, AfterValidator(_reject_nul)]


class RequestBody(BaseModel):
    """Unknown fields (``id``, ``user_id``, ``created_at``...) are ignored, never applied."""

    model_config = ConfigDict(extra="ignore")
