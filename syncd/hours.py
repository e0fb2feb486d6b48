"""Parsing working-hour specs such as "mon-fri 09:00-13:00" or "sun 22:00-02:00"."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time

from syncd.errors import UserError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


@dataclass(frozen=True)
class TimeRange:
    """A local time range; end <= start means it runs past midnight into the next day."""

    start: time
    end: time


def parse_time_range(text: str) -> TimeRange:
    match = _RANGE.match(text.strip())
    if not match:
        raise UserError(f"invalid time range {text!r}: expected HH:MM-HH:MM")
    start_h, start_m, end_h, end_m = (int(part) for part in match.groups())
    start = _clock(start_h, start_m, text, allow_24=False)
    end = _clock(end_h, end_m, text, allow_24=True)
    if start == end and (end_h, end_m) != (24, 0):
        raise UserError(f"invalid time range {text!r}: start and end are equal")
    return TimeRange(start, end)


def _clock(hour: int, minute: int, text: str, *, allow_24: bool) -> time:
    if allow_24 and (hour, minute) == (24, 0):
        return time(0, 0)  # "until midnight": an end at 00:00 runs to the next day's start
    if hour > 23 or minute > 59:
        raise UserError(f"invalid time in {text!r}")
    return time(hour, minute)


def parse_days(text: str) -> list[int]:
    """'mon-fri', 'sat', 'mon,wed,fri', 'fri-mon' (wraps), 'daily' -> weekday numbers (0=Mon)."""
    if text.lower() in ("daily", "every", "all"):
        return list(range(7))
    days: list[int] = []
    for part in text.lower().split(","):
        for day in _day_span(part.strip(), text):
            if day not in days:
                days.append(day)
    return days


def _day_span(part: str, text: str) -> list[int]:
    names = part.split("-")
    if len(names) > 2 or any(name[:3] not in WEEKDAYS or not name for name in names):
        raise UserError(f"invalid days {text!r}: use mon..sun, ranges like mon-fri, or lists")
    first = WEEKDAYS.index(names[0][:3])
    last = WEEKDAYS.index(names[-1][:3])
    return [(first + offset) % 7 for offset in range((last - first) % 7 + 1)]


def parse_hours_spec(spec: str) -> list[tuple[int, TimeRange]]:
    """One spec: days then one or more ranges, e.g. "mon-fri 09:00-12:00 13:00-17:00"."""
    words = spec.split()
    if len(words) < 2:
        raise UserError(
            f"invalid hours {spec!r}: expected DAYS HH:MM-HH:MM, e.g. 'mon-fri 09:00-13:00'"
        )
    days = parse_days(words[0])
    ranges = [parse_time_range(word) for word in words[1:]]
    return [(day, time_range) for day in days for time_range in ranges]
