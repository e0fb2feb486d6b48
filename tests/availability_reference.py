"""A slow, obviously correct availability reference for the property tests.

It shares the engine's input types and nothing else. Deliberately naive:

* wall time -> UTC is found by trying every UTC offset on a 15-minute grid (all offsets in use are
  multiples of 15 minutes) and keeping the instants whose local reading is that wall time;
* availability is a set of UTC minutes, so overlapping and touching windows merge by themselves;
* every candidate start is checked against every busy interval and every booking.

It assumes whole-minute rules and ranges, which is what the property tests generate.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

from syncd.availability import Interval, MentorAvailability, ServiceRules, Slot

MINUTE = timedelta(minutes=1)
DAY = timedelta(days=1)


@cache
def occurrences(wall: datetime, zone_name: str) -> tuple[datetime, ...]:
    """Every UTC instant at which a clock in the zone reads ``wall`` (naive), earliest first."""
    zone = ZoneInfo(zone_name)
    found = []
    for quarter_hours in range(-14 * 4, 14 * 4 + 1):
        instant = (wall - timedelta(minutes=15 * quarter_hours)).replace(tzinfo=UTC)
        if instant.astimezone(zone).replace(tzinfo=None) == wall:
            found.append(instant)
    return tuple(sorted(found))


def wall_to_utc(wall: datetime, zone_name: str) -> datetime:
    """First occurrence of a wall time; a skipped one is first moved forward by the gap's length."""
    found = occurrences(wall, zone_name)
    if found:
        return found[0]
    last_before_gap = wall
    while not occurrences(last_before_gap, zone_name):
        last_before_gap -= MINUTE
    first_after_gap = wall
    while not occurrences(first_after_gap, zone_name):
        first_after_gap += MINUTE
    gap = first_after_gap - (last_before_gap + MINUTE)
    return occurrences(wall + gap, zone_name)[0]


def local_date(instant: datetime, zone_name: str) -> date:
    return instant.astimezone(ZoneInfo(zone_name)).date()


def ranges_for(mentor: MentorAvailability, day: date) -> list[tuple[time, time]]:
    for override in mentor.overrides:
        if override.day == day:
            return list(override.ranges)
    return [(rule.start, rule.end) for rule in mentor.weekly if rule.weekday == day.weekday()]


def window_of(day: date, opens: time, closes: time, zone_name: str) -> tuple[datetime, datetime]:
    closes_on = day if closes > opens else day + DAY
    start = wall_to_utc(datetime.combine(day, opens), zone_name)
    end = wall_to_utc(datetime.combine(closes_on, closes), zone_name)
    return start, end


def available_minutes(mentor: MentorAvailability, first: date, last: date) -> set[datetime]:
    """UTC minutes covered by the windows of local dates first..last, walking day by day."""
    minutes: set[datetime] = set()
    day = first
    while day <= last:
        for opens, closes in ranges_for(mentor, day):
            start, end = window_of(day, opens, closes, mentor.timezone)
            minute = start
            while minute < end:
                minutes.add(minute)
                minute += MINUTE
        day += DAY
    return minutes


def runs(minutes: set[datetime]) -> list[tuple[datetime, datetime]]:
    """Maximal stretches of consecutive minutes, as [start, end)."""
    found: list[tuple[datetime, datetime]] = []
    for minute in sorted(minutes):
        if found and found[-1][1] == minute:
            found[-1] = (found[-1][0], minute + MINUTE)
        else:
            found.append((minute, minute + MINUTE))
    return found


def overlaps(a_start: datetime, a_end: datetime, b_start: datetime, b_end: datetime) -> bool:
    return max(a_start, b_start) < min(a_end, b_end)


def start_is_bookable(
    rules: ServiceRules, mentor: MentorAvailability, now: datetime, start: datetime
) -> bool:
    if not now + rules.min_notice <= start < now + rules.horizon:
        return False
    guarded_from = start - rules.buffer_before
    guarded_until = start + rules.duration + rules.buffer_after
    for busy in mentor.busy:
        if overlaps(guarded_from, guarded_until, busy.start, busy.end):
            return False
    if rules.max_per_day is not None:
        day = local_date(start, mentor.timezone)
        same_day = [b for b in mentor.booked_starts if local_date(b, mentor.timezone) == day]
        if len(same_day) >= rules.max_per_day:
            return False
    return True


def reference_mentor_slots(
    rules: ServiceRules,
    mentor: MentorAvailability,
    now: datetime,
    start: datetime,
    end: datetime,
) -> list[Interval]:
    # Windows are generated from the local day before now + min_notice (the engine's documented
    # anchor) to well past the end of the range.
    first = local_date(now + rules.min_notice, mentor.timezone) - DAY
    last = local_date(end + rules.duration, mentor.timezone) + 3 * DAY
    slots = []
    for run_start, run_end in runs(available_minutes(mentor, first, last)):
        candidate = run_start
        while candidate + rules.duration <= run_end:
            if start <= candidate < end and start_is_bookable(rules, mentor, now, candidate):
                slots.append(Interval(candidate, candidate + rules.duration))
            candidate += rules.step
    return sorted(slots, key=lambda interval: interval.start)


def reference_compute_slots(
    rules: ServiceRules,
    mentors: Sequence[MentorAvailability],
    now: datetime,
    start: datetime,
    end: datetime,
) -> list[Slot]:
    free: dict[datetime, list[str]] = {}
    for mentor in mentors:
        for interval in reference_mentor_slots(rules, mentor, now, start, end):
            free.setdefault(interval.start, []).append(mentor.mentor_id)
    return [
        Slot(begin, begin + rules.duration, tuple(sorted(free[begin]))) for begin in sorted(free)
    ]
