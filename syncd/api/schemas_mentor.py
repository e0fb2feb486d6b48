"""Bodies of the mentor endpoints: working hours, date overrides, calendar choices, connecting."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from syncd.api.schemas import CalendarOut, redact
from syncd.api.words import SyncFacts, last_sync_words, problem_words
from syncd.calendars import CalendarStatus
from syncd.hours import WEEKDAYS
from syncd.store.models import DateOverride, Mentor

RangeText = Annotated[str, Field(max_length=20, examples=["09:00-13:00"])]
SpecText = Annotated[str, Field(max_length=200, examples=["mon-fri 09:00-13:00"])]


def clock_text(value: time, *, end: bool = False) -> str:
    # An end at midnight is stored as 00:00; "24:00" reads right and parses back the same.
    return "24:00" if end and value == time(0, 0) else value.strftime("%H:%M")


def range_text(start: time, end: time) -> str:
    return f"{clock_text(start)}-{clock_text(end, end=True)}"


class OverrideOut(BaseModel):
    date: date
    ranges: list[str] = Field(description="Local hours that day; empty means unavailable.")


class HoursOut(BaseModel):
    """A mentor's working hours, in the mentor's own zone."""

    timezone: str
    weekly: dict[str, list[str]] = Field(
        description="Per weekday (mon..sun), local ranges like 09:00-13:00; an end before the "
        "start runs past midnight."
    )
    overrides: list[OverrideOut] = Field(description="Dates from today on whose hours differ.")

    @classmethod
    def of(cls, mentor: Mentor, today: date) -> HoursOut:
        weekly: dict[str, list[str]] = {day: [] for day in WEEKDAYS}
        for row in mentor.weekly_hours:
            weekly[WEEKDAYS[row.weekday]].append(range_text(row.start_time, row.end_time))
        return cls(timezone=mentor.timezone, weekly=weekly, overrides=_overrides(mentor, today))


def _overrides(mentor: Mentor, today: date) -> list[OverrideOut]:
    by_day: dict[date, list[str]] = {}
    for row in mentor.overrides:
        if row.day < today:
            continue
        ranges = by_day.setdefault(row.day, [])
        if row.start_time is not None and row.end_time is not None:
            ranges.append(range_text(row.start_time, row.end_time))
    return [OverrideOut(date=day, ranges=ranges) for day, ranges in sorted(by_day.items())]


def override_rows(mentor: Mentor, day: date) -> list[DateOverride]:
    return [row for row in mentor.overrides if row.day == day]


class HoursIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    specs: list[SpecText] = Field(
        max_length=50,
        description='Replaces all weekly hours, e.g. ["mon-fri 09:00-13:00", "sat 10:00-12:00"]; '
        "an empty list means no weekly hours.",
    )


class OverrideIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ranges: list[RangeText] = Field(
        max_length=10, description="That date's local hours; an empty list marks it unavailable."
    )


class CalendarStatusOut(CalendarOut):
    """A calendar's connection status, with its state in words for the mentor page."""

    last_sync_words: str = Field(examples=["synced 3 minutes ago"])
    problem: str | None = Field(examples=["the server rejected the password — reconnect"])

    @classmethod
    def of_status(cls, status: CalendarStatus, now: datetime) -> CalendarStatusOut:
        facts = SyncFacts(
            provider=status.provider,
            last_success=status.last_success,
            last_error=status.last_error,
            consecutive_failures=status.consecutive_failures,
            needs_reconnect=status.needs_reconnect,
        )
        return cls(
            id=status.id,
            provider=status.provider,
            name=status.name,
            blocks_time=status.blocks_time,
            is_destination=status.is_destination,
            last_success=status.last_success,
            last_error=redact(status.last_error),
            consecutive_failures=status.consecutive_failures,
            needs_reconnect=status.needs_reconnect,
            last_sync_words=last_sync_words(facts, now),
            problem=problem_words(facts),
        )


class CalendarPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    blocks_time: bool | None = Field(default=None, description="Its events block bookable time.")
    is_destination: bool | None = Field(
        default=None, description="It receives booked sessions (one calendar per mentor)."
    )


class CalDAVConnectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
        max_length=2000,
        examples=["https://dav.example.org/"],
        description="The server, principal or calendar URL.",
    )
    username: str | None = Field(default=None, max_length=320)
    password: SecretStr | None = Field(
        default=None, max_length=1000, description="An app password; stored encrypted."
    )


class ConnectedOut(BaseModel):
    account_id: int
    calendars: list[CalendarStatusOut]
