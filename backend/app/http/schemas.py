"""Building blocks for request bodies shared by every domain."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

Ranges = tuple[tuple[int, int], ...]

SURROGATE_MESSAGE = "must be valid Unicode text, without unpaired surrogates"


@dataclass(frozen=True)
class _Refusal:
    """Characters a kind of text refuses (inclusive code point ranges), what to tell, and
    whether the published pattern names them."""

    ranges: Ranges
    message: str
    published: bool = True


# PostgreSQL text cannot hold NUL: refused as bad input instead of failing in the driver.
_NUL = _Refusal(((0x00, 0x00),), "must not contain NUL characters")
# Half of a UTF-16 pair ("\ud800" in JSON) is no character: it cannot be encoded as UTF-8.
# Left out of the pattern: a string holding one is not Unicode text (I-JSON, RFC 7493, forbids
# it), and regex engines over Unicode scalar values (Rust's, Go's) refuse a pattern naming it.
_SURROGATES = _Refusal(((0xD800, 0xDFFF),), SURROGATE_MESSAGE, published=False)
# C0, DEL and C1 controls (ESC sequences, bells, NEL) but tab, line feed and carriage return.
_CONTROLS = _Refusal(
    ((0x01, 0x08), (0x0B, 0x0C), (0x0E, 0x1F), (0x7F, 0x9F)),
    "must not contain control characters other than tabs and line breaks",
)
_LINE_CONTROLS = _Refusal(
    ((0x01, 0x1F), (0x7F, 0x9F), (0x2028, 0x2029)),
    "must be a single line, without tabs or other control characters",
)
# Invisible characters that hide or reorder what is shown (zero-width space, bidi embeddings,
# overrides and isolates, word joiner, invisible operators, BOM, annotation marks); the joiners
# and direction marks that scripts and emoji sequences need (U+200C, U+200D, U+200E/F) stay.
_INVISIBLE = _Refusal(
    (
        (0x200B, 0x200B),
        (0x202A, 0x202E),
        (0x2060, 0x2064),
        (0x2066, 0x206F),
        (0xFEFF, 0xFEFF),
        (0xFFF9, 0xFFFB),
    ),
    "must not contain invisible formatting characters such as zero-width spaces or "
    "direction overrides",
)
# What pydantic's strip_whitespace removes from both ends (Unicode White_Space, as Rust's
# str::trim), tabs and line breaks included: a title is checked once they are gone.
WHITE_SPACE: Ranges = (
    (0x09, 0x0D),
    (0x20, 0x20),
    (0x85, 0x85),
    (0xA0, 0xA0),
    (0x1680, 0x1680),
    (0x2000, 0x200A),
    (0x2028, 0x2029),
    (0x202F, 0x202F),
    (0x205F, 0x205F),
    (0x3000, 0x3000),
)
_WHITE_SPACE_CHARACTERS = "".join(
    chr(code_point) for low, high in WHITE_SPACE for code_point in range(low, high + 1)
)


def _class_body(ranges: Iterable[tuple[int, int]]) -> str:
    # \uXXXX only: the same spelling in ECMAScript (with the "u" flag JSON Schema asks for) and
    # in Python's re. Every range here is in the Basic Multilingual Plane.
    def escape(code_point: int) -> str:
        return f"\\u{code_point:04X}"

    merged: list[tuple[int, int]] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(high, merged[-1][1]))
        else:
            merged.append((low, high))
    return "".join(
        escape(low) if low == high else f"{escape(low)}-{escape(high)}" for low, high in merged
    )


@dataclass(frozen=True)
class TextRules:
    """Annotated metadata for a string field: refuses characters before the string's own
    constraints run and publishes the same rule as the field's ``pattern`` (for any Unicode
    text: unpaired surrogates, which no Unicode text holds, are refused all the same).

    ``stripped`` says the field also carries ``StringConstraints(strip_whitespace=True,
    min_length=1)``: the rules then apply to what is left once the ends are stripped, and the
    pattern says so and asks for one character that is not white space.
    """

    refusals: tuple[_Refusal, ...]
    stripped: bool = False
    pattern: str = field(init=False)
    _refused: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        ranges = [span for refusal in self.refusals if refusal.published for span in refusal.ranges]
        refused = _class_body(ranges)
        pattern = f"^[^{refused}]*$"
        if self.stripped:
            # White space at the ends, then a first and a last character that are neither
            # white space nor refused, and nothing refused in between.
            space, solid = _class_body(WHITE_SPACE), _class_body([*ranges, *WHITE_SPACE])
            pattern = f"^[{space}]*[^{solid}](?:[^{refused}]*[^{solid}])?[{space}]*$"
        every = _class_body(span for refusal in self.refusals for span in refusal.ranges)
        object.__setattr__(self, "pattern", pattern)
        object.__setattr__(self, "_refused", re.compile(f"[{every}]"))

    def check(self, value: object) -> object:
        # Runs before the string validator, on the value as sent: pydantic's own string check
        # would refuse an unpaired surrogate first, in words of its own.
        if not isinstance(value, str):
            return value
        text = value.strip(_WHITE_SPACE_CHARACTERS) if self.stripped else value
        if found := self._refused.search(text):
            code_point = ord(found.group())
            for refusal in self.refusals:
                if any(low <= code_point <= high for low, high in refusal.ranges):
                    raise ValueError(refusal.message)
        return value

    def __get_pydantic_core_schema__(
        self, source: type[Any], handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_before_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema["pattern"] = self.pattern
        return json_schema


# Passwords: any Unicode text (spaces, emoji, controls) but NUL.
SECRET = TextRules((_NUL, _SURROGATES))
# Free text such as a description: tabs and line breaks allowed.
MULTI_LINE = TextRules((_NUL, _SURROGATES, _CONTROLS, _INVISIBLE))
# A title or a name: one line once white space is stripped from its ends, and not blank.
SINGLE_LINE = TextRules((_NUL, _SURROGATES, _LINE_CONTROLS, _INVISIBLE), stripped=True)


def _without_null(schema: dict[str, Any]) -> None:
    [published] = [branch for branch in schema.pop("anyOf") if branch != {"type": "null"}]
    schema.update(published)
    if "default" in schema and schema["default"] is None:  # absent means unchanged, not null
        del schema["default"]


def _refuse_null(value: object) -> object:
    if value is None:
        raise PydanticCustomError("null_refused", "cannot be null")
    return value


# For an optional field that may be absent but not null: the schema offers no null to send, and
# a null sent anyway is refused before the type is checked, as one error at the field's own
# location (the type stays `X | None`, whose union would report one error per member). The
# check is a field validator, which runs only when the field is present: an absent field costs
# nothing, where a model validator would run on every body.
NOT_NULLABLE = Field(json_schema_extra=_without_null)
# A FieldInfo's metadata is where pydantic keeps the validators that Annotated carries: one
# marker then does both jobs.
NOT_NULLABLE.metadata.append(BeforeValidator(_refuse_null))


class RequestBody(BaseModel):
    """Unknown fields (``user_id``, ``created_at``...) are ignored, never applied."""

    # strict: a JSON 0 is not a boolean and 1 is not a string; what the schema says is what
    # is accepted.
    model_config = ConfigDict(extra="ignore", strict=True)
