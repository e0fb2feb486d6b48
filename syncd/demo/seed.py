"""The demo mentors and their seeded events: iCalendar, occurrences, the next DST change."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from zoneinfo import ZoneInfo

import icalendar

from syncd.demo.common import DemoError

RECURRING_SINCE = date(2026, 1, 1)  # the weekly meetings exist since then
FIXED_STAMP = datetime(2026, 1, 1, tzinfo=UTC)  # DTSTAMP: re-seeding writes identical objects
DAY_CODES = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


@dataclass(frozen=True)
class DemoMentor:
    id: str
    zone: str
    meeting_days: tuple[int, ...]  # weekdays (Monday = 0) of the weekly meeting
    meeting: tuple[clock, clock]
    focus_days: tuple[int, ...]  # weekdays on which the free "focus time" block may fall
    focus: tuple[clock, clock]


MENTORS = (
    DemoMentor("ana", "Europe/Madrid", (0, 2), (clock(10), clock(11)), (1, 3), (clock(16), clock(18))),
    DemoMentor("ben", "America/New_York", (1, 3), (clock(9), clock(10)), (0, 2, 4), (clock(10), clock(12))),
)  # fmt: skip
BOOKED_MENTOR = MENTORS[0]


@dataclass(frozen=True)
class SeedEvent:
    key: str
    summary: str
    start: datetime | date  # a date: an all-day event
    end: datetime | date
    weekly: tuple[int, ...] = ()
    transparent: bool = False


@dataclass(frozen=True)
class Interval:
    start: datetime
    end: datetime

    def overlaps(self, other: Interval) -> bool:
        return self.start < other.end and other.start < self.end


def next_date(first: date, weekdays: Sequence[int], skip: date | None = None) -> date:
    """The first date from `first` on one of `weekdays`, other than `skip`."""
    return next(
        day
        for day in (first + timedelta(days=n) for n in range(15))
        if day.weekday() in weekdays and day != skip
    )


def next_offset_change(zone: ZoneInfo, now: datetime) -> datetime:
    """The first whole UTC hour after `now` at which `zone`'s offset differs (a DST change)."""
    hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    offset = hour.astimezone(zone).utcoffset()
    for step in range(1, 24 * 400):
        candidate = hour + timedelta(hours=step)
        if candidate.astimezone(zone).utcoffset() != offset:
            return candidate
    raise DemoError(f"{zone.key} has no DST change within 400 days")


def seed_events(mentor: DemoMentor, now: datetime) -> list[SeedEvent]:
    zone = ZoneInfo(mentor.zone)

    def at(day: date, hour: clock) -> datetime:
        return datetime.combine(day, hour, tzinfo=zone)

    today = now.astimezone(zone).date()
    focus_day = next_date(today + timedelta(days=1), mentor.focus_days)
    all_day = next_date(today + timedelta(days=2), range(5), skip=focus_day)
    change = next_offset_change(zone, now).astimezone(zone).date()
    meeting_day = next_date(RECURRING_SINCE, mentor.meeting_days)
    return [
        SeedEvent("weekly", "Team meeting", at(meeting_day, mentor.meeting[0]),
                  at(meeting_day, mentor.meeting[1]), weekly=mentor.meeting_days),
        SeedEvent("all-day", "Conference (all day)", all_day, all_day + timedelta(days=1)),
        SeedEvent("focus", "Focus time (free)", at(focus_day, mentor.focus[0]),
                  at(focus_day, mentor.focus[1]), transparent=True),
        SeedEvent("dst", "Offsite across the DST change", at(change - timedelta(days=2), clock(12)),
                  at(change + timedelta(days=1), clock(11))),
    ]  # fmt: skip


def to_ical(event: SeedEvent, uid: str) -> bytes:
    vevent = icalendar.Event()
    vevent.add("uid", uid)
    vevent.add("dtstamp", FIXED_STAMP)
    vevent.add("summary", event.summary)
    vevent.add("dtstart", event.start)
    vevent.add("dtend", event.end)
    vevent.add("transp", "TRANSPARENT" if event.transparent else "OPAQUE")
    if event.weekly:
        vevent.add("rrule", {"FREQ": "WEEKLY", "BYDAY": [DAY_CODES[d] for d in event.weekly]})
    calendar = icalendar.Calendar()
    calendar.add("prodid", "-//syncd//demo//EN")
    calendar.add("version", "2.0")
    calendar.add_component(vevent)
    calendar.add_missing_timezones()
    return bytes(calendar.to_ical())


def occurrences(event: SeedEvent, zone: ZoneInfo, first: date, days: int) -> Iterator[Interval]:
    """The event's instances that touch the local dates first .. first + days (inclusive)."""
    if isinstance(event.start, datetime) and isinstance(event.end, datetime):
        dates = (first + timedelta(days=n) for n in range(days + 1))
        for day in (d for d in dates if d.weekday() in event.weekly):
            start, end = event.start.timetz(), event.end.timetz()
            yield Interval(datetime.combine(day, start), datetime.combine(day, end))
        if not event.weekly:
            yield Interval(event.start, event.end)
        return
    midnight = clock(0, tzinfo=zone)
    yield Interval(datetime.combine(event.start, midnight), datetime.combine(event.end, midnight))


def describe_event(event: SeedEvent, zone: ZoneInfo) -> str:
    if not isinstance(event.start, datetime) or not isinstance(event.end, datetime):
        return f"{event.summary}: {event.start:%a %d %b}, all day ({zone.key})"
    if event.weekly:
        days = ",".join(DAY_CODES[d] for d in event.weekly)
        return f"{event.summary}: every {days} {event.start:%H:%M}-{event.end:%H:%M} ({zone.key})"
    free = ", transparent: does not block" if event.transparent else ""
    span = f"{event.start:%a %d %b %H:%M} - {event.end:%a %d %b %H:%M}"
    return f"{event.summary}: {span} ({zone.key}){free}"
