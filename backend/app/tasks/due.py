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
import zoneinfo
from functools import cache
from typing import Annotated, Any

from pydantic import BaseModel, Field, model_validator

from app.http.schemas import RequestBody
from app.tasks.models import TIMEZONE_MAX_LENGTH

TimeZoneName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=TIMEZONE_MAX_LENGTH,
        description="An IANA time zone name, such as Europe/Berlin",
        examples=["Europe/Berlin"],
    ),
]


@cache
def _zone_names() -> frozenset[str]:
    # The names the tz database defines (from the system or the tzdata package), read once:
    # never a path or a file name the server happens to have.
    return frozenset(zoneinfo.available_timezones())


def time_zone(name: str) -> zoneinfo.ZoneInfo:
    """The zone of an IANA name; ValueError for any other string."""
    if name not in _zone_names():
        raise ValueError(f"unknown time zone {name!r}: use an IANA name such as Europe/Berlin")
    return zoneinfo.ZoneInfo(name)


class DueIn(RequestBody):
    """``{"date": "2026-05-01"}`` (all day) or ``{"datetime": "2026-05-01T09:00:00",
    "timezone": "Europe/Berlin"}`` (a wall-clock time, without an offset, in that zone)."""

    # Not strict: JSON has no date types; the strings are ISO 8601.
    day: dt.date | None = Field(default=None, alias="date", strict=False)
    wall_clock: dt.datetime | None = Field(default=None, alias="datetime", strict=False)
    timezone: TimeZoneName | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> DueIn:
        if self.day is not None:
            if self.wall_clock is not None or self.timezone is not None:
                raise ValueError("give date alone, or datetime with timezone")
            return self
        if self.wall_clock is None or self.timezone is None:
            raise ValueError("give date alone, or datetime with timezone")
        if self.wall_clock.tzinfo is not None:
            raise ValueError(
                "datetime is a wall-clock time without an offset; the zone is timezone"
            )
        if self.wall_clock.microsecond:
            raise ValueError("datetime has whole seconds")
        zone = time_zone(self.timezone)
        try:
            self.wall_clock.replace(tzinfo=zone).astimezone(dt.UTC)
        except OverflowError:
            raise ValueError("datetime is out of range") from None
        return self

    def columns(self) -> dict[str, Any]:
        """The task's due columns for this due."""
        if self.day is not None:
            return {
                "due_date": self.day,
                "due_datetime": None,
                "due_timezone": None,
                "due_at": dt.datetime.combine(self.day, dt.time(0), dt.UTC),
            }
        assert self.wall_clock is not None  # validated
        assert self.timezone is not None
        # fold=0 (the default): RFC 5545's reading of skipped and repeated times (see the top).
        instant = self.wall_clock.replace(tzinfo=time_zone(self.timezone)).astimezone(dt.UTC)
        return {
            "due_date": self.wall_clock.date(),
            "due_datetime": self.wall_clock,
            "due_timezone": self.timezone,
            "due_at": instant,
        }


NO_DUE: dict[str, Any] = dict.fromkeys(("due_date", "due_datetime", "due_timezone", "due_at"))


def due_columns(due: DueIn | None) -> dict[str, Any]:
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
