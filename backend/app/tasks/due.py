"""A task's due: a day, or a wall-clock time in an IANA time zone, and the instant it sorts by.

A timed due is kept as the client gave it (``2026-05-01T09:00:00`` in ``Europe/Berlin``) and as
the instant that means under the time-zone rules the server has (``due_at``), so sorting and
filtering compare instants across zones. Times that a zone's clock skips or repeats are read as
RFC 5545 reads them: a skipped time (02:30 when clocks jump from 02:00 to 03:00) with the
offset before the jump, so it lands an hour later on the new clock; a repeated time at its
first occurrence. An all-day due has no zone (it is the same day wherever the user is); it
sorts and filters as 00:00 UTC of its day, and it is overdue once the day has passed in the
zone the listing names (``tz``, UTC by default).
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from functools import cache
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from app.tasks.models import FIRST_DUE_DAY, LAST_DUE_DAY, TIMEZONE_MAX_LENGTH

TimeZoneName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=TIMEZONE_MAX_LENGTH,
        description="An IANA time zone name, such as Europe/Berlin",
        examples=["Europe/Berlin"],
    ),
]


# Files a system's zone directory holds that are not IANA zones: the host's own setting and
# the database's internals.
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


@cache
def _zone_names() -> frozenset[str]:
    # The names the tz database defines (from the system or the tzdata package), read once:
    # never a path or a file name the server happens to have.
    return frozenset(zoneinfo.available_timezones()) - _NOT_ZONES


UNKNOWN_ZONE = "unknown time zone: use an IANA name such as Europe/Berlin"


def time_zone(name: str) -> zoneinfo.ZoneInfo:
    """The zone of an IANA name; ValueError for any other string (not repeated in the message:
    errors never echo input)."""
    if name not in _zone_names():
        raise ValueError(UNKNOWN_ZONE)
    return zoneinfo.ZoneInfo(name)


_DUE_RANGE = f"from {FIRST_DUE_DAY.isoformat()} to {LAST_DUE_DAY.isoformat()}"
# Before and after the instant of every due the range allows, whatever its zone's offset
# (none is a day or more).
_BEFORE_EVERY_DUE = dt.datetime.combine(FIRST_DUE_DAY, dt.time(0), dt.UTC) - dt.timedelta(days=2)
_AFTER_EVERY_DUE = dt.datetime.combine(LAST_DUE_DAY, dt.time(0), dt.UTC) + dt.timedelta(days=3)
# A day as ISO 8601 writes it: nothing else (pydantic alone would also read "1746057600" as a
# Unix time and "2026-05-01T00:00:00+05:00" as its day).
DAY_PATTERN = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _within_dues(value: dt.datetime) -> dt.datetime:
    # A filter's instant, in UTC, no further out than just past every due: it finds the same
    # tasks, and the driver never meets an instant it cannot write (the calendar's ends, or an
    # instant at year 1 or 9999 that UTC takes out of the calendar).
    try:
        instant = value.astimezone(dt.UTC)
    except OverflowError:
        return _BEFORE_EVERY_DUE if value.year == 1 else _AFTER_EVERY_DUE
    return min(max(instant, _BEFORE_EVERY_DUE), _AFTER_EVERY_DUE)


# RFC 3339's date-time (with a space for the T, as it allows).
_INSTANT_PATTERN = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def _rfc3339(value: object) -> object:
    # An instant as RFC 3339 writes it, with its offset: not a number (pydantic would read it
    # as a Unix time).
    if not isinstance(value, str) or not _INSTANT_PATTERN.fullmatch(value):
        raise ValueError(
            "must be an RFC 3339 date and time with an offset, such as 2026-05-01T09:00:00+02:00"
        )
    return value


# due_before and due_after.
DueBound = Annotated[
    AwareDatetime,
    BeforeValidator(_rfc3339),
    AfterValidator(_within_dues),
    Field(description="An RFC 3339 date and time with an offset"),
]


# A wall-clock time as ISO 8601 writes it, without an offset (the zone says where it is).
WALL_CLOCK_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2})?$"
# Exact keys only: a date with a zone, or a time without one, is refused, not half-read.
_DUE_CONFIG = ConfigDict(extra="forbid", strict=True, populate_by_name=False)


class DueDayIn(BaseModel):
    """All day: ``{"date": "2026-05-01"}``."""

    model_config = _DUE_CONFIG
    # Not strict: JSON has no date type; the string is ISO 8601 (and only a string: not strict,
    # pydantic would also take a number as a timestamp).
    day: dt.date = Field(alias="date", strict=False)

    @field_validator("day", mode="before")
    @classmethod
    def _a_string(cls, value: object) -> object:
        if not isinstance(value, str) or not DAY_PATTERN.fullmatch(value):
            raise ValueError("must be a day as YYYY-MM-DD")
        return value

    @field_validator("day")
    @classmethod
    def _in_range(cls, value: dt.date) -> dt.date:
        if not FIRST_DUE_DAY <= value <= LAST_DUE_DAY:
            raise ValueError(f"must be a day {_DUE_RANGE}")
        return value

    def columns(self) -> dict[str, Any]:
        return {
            "due_date": self.day,
            "due_datetime": None,
            "due_timezone": None,
            "due_at": dt.datetime.combine(self.day, dt.time(0), dt.UTC),
        }


class DueTimeIn(BaseModel):
    """At a time: ``{"datetime": "2026-05-01T09:00:00", "timezone": "Europe/Berlin"}``."""

    model_config = _DUE_CONFIG
    wall_clock: str = Field(
        alias="datetime",
        pattern=WALL_CLOCK_PATTERN,
        description="A wall-clock time without an offset, read in timezone",
        examples=["2026-05-01T09:00:00"],
    )
    # Not an enum in the schema: the database's ~600 names include some that generated clients
    # cannot tell apart as identifiers (GMT0, GMT-0, GMT+0).
    timezone: str = Field(
        min_length=1,
        max_length=TIMEZONE_MAX_LENGTH,
        description="An IANA time zone name, such as Europe/Berlin (others are 422)",
        examples=["Europe/Berlin"],
    )

    @field_validator("timezone")
    @classmethod
    def _a_zone(cls, value: str) -> str:
        time_zone(value)
        return value

    @model_validator(mode="after")
    def _a_real_time(self) -> DueTimeIn:
        try:
            local = self.local()
        except ValueError:
            raise ValueError("has a datetime that is not a date and time of the calendar") from None
        if not FIRST_DUE_DAY <= local.date() <= LAST_DUE_DAY:
            raise ValueError(f"must be on a day {_DUE_RANGE}")
        return self

    def local(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.wall_clock)

    def instant(self) -> dt.datetime:
        # fold=0 (the default): RFC 5545's reading of skipped and repeated times (the top).
        return self.local().replace(tzinfo=time_zone(self.timezone)).astimezone(dt.UTC)

    def columns(self) -> dict[str, Any]:
        local = self.local()
        return {
            "due_date": local.date(),
            "due_datetime": local,
            "due_timezone": self.timezone,
            "due_at": self.instant(),
        }


def _due_kind(value: Any) -> str | None:
    # Which of the two a due is, by its keys, so an error names that one's fields only. The
    # tags are not identifiers, so error locations leave them out (http/validation.py).
    if isinstance(value, dict):
        return "all-day" if "date" in value else "wall-clock"
    if isinstance(value, DueDayIn | DueTimeIn):
        return "all-day" if isinstance(value, DueDayIn) else "wall-clock"
    return None


DueIn = Annotated[
    Annotated[DueDayIn, Tag("all-day")] | Annotated[DueTimeIn, Tag("wall-clock")],
    Discriminator(
        _due_kind,
        custom_error_type="due_type",
        custom_error_message='must be null, {"date": ...} or {"datetime": ..., "timezone": ...}',
    ),
]
NO_DUE: dict[str, Any] = dict.fromkeys(("due_date", "due_datetime", "due_timezone", "due_at"))


def due_columns(due: DueDayIn | DueTimeIn | None) -> dict[str, Any]:
    """The task's due columns for ``due`` (None: no due)."""
    return NO_DUE if due is None else due.columns()


class DueDay(BaseModel):
    date: dt.date


class DueTime(BaseModel):
    datetime: str = Field(
        description="The wall-clock time, without an offset", examples=["2026-05-01T09:00:00"]
    )
    timezone: str
    at: dt.datetime = Field(description="The instant it stands for (UTC)")


DueOut = DueDay | DueTime
