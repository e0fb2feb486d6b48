"""The availability engine: weekly rules, date overrides and busy time in, bookable slots out.

Pure: no I/O, no SQL, no clock (``now`` is a parameter). Implements DESIGN.md §2 and §4.

Every instant given to or returned by the engine is an aware datetime; results are in UTC. Local
wall time appears only in the rules, which are read in the mentor's IANA zone:

* a wall time that does not exist (spring-forward gap) moves forward by the gap, and an ambiguous
  one (fall-back) takes its first occurrence. Both fall out of ``zoneinfo`` with ``fold=0``;
* a rule or override range whose end is not after its start crosses midnight into the next local
  day (``22:00-02:00``, ``18:00-00:00``; ``09:00-09:00`` is a full 24 hours);
* windows that overlap or touch once in UTC are merged; starts step from the merged window's start.

Which windows exist is anchored on ``now``, not on the requested range: windows are generated from
the local day before ``now + min_notice``. A chain of touching windows (say a mentor open around the
clock) therefore aligns its steps the same way whichever range is asked for, so `is_bookable` agrees
with `mentor_slots` for every range.

Internally instants are integer microseconds since the Unix epoch: exact, cheap to compare and
hash, and `range` builds a step grid in C.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from itertools import pairwise
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from syncd.errors import UserError

__all__ = [
    "MAX_SPAN",
    "AvailabilityError",
    "DateOverride",
    "Interval",
    "MentorAvailability",
    "ServiceRules",
    "Slot",
    "WeeklyRule",
    "availability_windows",
    "compute_slots",
    "is_bookable",
    "mentor_slots",
]

MAX_SPAN = timedelta(days=400)
"""Longest range, horizon, notice, duration, buffer or step the engine accepts."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_ONE_DAY = timedelta(days=1)
_MIDNIGHT = time(0, 0)

# An instant as integer microseconds since the epoch, and a span [start, end) of them.
_Micros = int
_Span = tuple[int, int]


class AvailabilityError(UserError, ValueError):
    """The engine was given input it refuses: the message says what and why."""


# ---------------------------------------------------------------- value types


@dataclass(frozen=True, slots=True)
class Interval:
    """A half-open span of time [start, end); both ends are stored in UTC."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _require_aware(self.start, "interval start"))
        object.__setattr__(self, "end", _require_aware(self.end, "interval end"))
        if self.end < self.start:
            raise AvailabilityError(
                f"interval ends ({self.end.isoformat()}) before it starts "
                f"({self.start.isoformat()})"
            )


@dataclass(frozen=True, slots=True)
class WeeklyRule:
    """Open every ``weekday`` (0 = Monday) from ``start`` to ``end``, in the mentor's wall time.

    ``end <= start`` crosses midnight into the next local day; ``end == 00:00`` means midnight.
    """

    weekday: int
    start: time
    end: time

    def __post_init__(self) -> None:
        if isinstance(self.weekday, bool) or self.weekday not in range(7):
            raise AvailabilityError(
                f"weekday must be 0 (Monday) to 6 (Sunday), got {self.weekday!r}"
            )
        _require_wall_time(self.start, "weekly rule start")
        _require_wall_time(self.end, "weekly rule end")


@dataclass(frozen=True, slots=True)
class DateOverride:
    """Replaces the windows that start on local date ``day``; no ranges = unavailable that day."""

    day: date
    ranges: tuple[tuple[time, time], ...]

    def __post_init__(self) -> None:
        if isinstance(self.day, datetime) or not isinstance(self.day, date):
            raise AvailabilityError(f"override day must be a date, got {self.day!r}")
        for opens, closes in self.ranges:
            _require_wall_time(opens, f"override {self.day} range start")
            _require_wall_time(closes, f"override {self.day} range end")


@dataclass(frozen=True, slots=True)
class ServiceRules:
    """How a service is booked: duration, buffers around it, notice, horizon, step, daily cap."""

    duration: timedelta
    buffer_before: timedelta = timedelta(0)
    buffer_after: timedelta = timedelta(0)
    min_notice: timedelta = timedelta(0)
    horizon: timedelta = timedelta(days=14)
    step: timedelta = timedelta(minutes=15)
    max_per_day: int | None = None

    def __post_init__(self) -> None:
        _require_span(self.duration, "duration", allow_zero=False)
        _require_span(self.step, "step", allow_zero=False)
        _require_span(self.buffer_before, "buffer_before", allow_zero=True)
        _require_span(self.buffer_after, "buffer_after", allow_zero=True)
        _require_span(self.min_notice, "min_notice", allow_zero=True)
        _require_span(self.horizon, "horizon", allow_zero=True)
        if self.max_per_day is not None and (
            isinstance(self.max_per_day, bool) or self.max_per_day < 0
        ):
            raise AvailabilityError(
                f"max_per_day must be None or a count >= 0, got {self.max_per_day!r}"
            )


@dataclass(frozen=True, slots=True)
class MentorAvailability:
    """One mentor's hours and what already fills them.

    ``busy`` holds calendar busy time and existing bookings already widened by their own buffers;
    ``booked_starts`` are the starts of live bookings that count toward ``max_per_day``.
    """

    mentor_id: str
    timezone: str
    weekly: tuple[WeeklyRule, ...]
    overrides: tuple[DateOverride, ...] = ()
    busy: tuple[Interval, ...] = ()
    booked_starts: tuple[datetime, ...] = ()

    def __post_init__(self) -> None:
        _zone(self.timezone)
        seen: set[date] = set()
        for override in self.overrides:
            if override.day in seen:
                raise AvailabilityError(
                    f"mentor {self.mentor_id!r} has two overrides for {override.day}"
                )
            seen.add(override.day)
        object.__setattr__(
            self,
            "booked_starts",
            tuple(_require_aware(s, "booked start") for s in self.booked_starts),
        )


@dataclass(frozen=True, slots=True)
class Slot:
    """A bookable [start, end) in UTC and the mentors free for it, sorted by id."""

    start: datetime
    end: datetime
    mentors: tuple[str, ...]


# ---------------------------------------------------------------- public functions


def mentor_slots(
    rules: ServiceRules,
    mentor: MentorAvailability,
    now: datetime,
    start: datetime,
    end: datetime,
) -> list[Interval]:
    """The mentor's bookable [s, s + duration) for every start s in [start, end), sorted."""
    query = _Query.build(rules, now, start, end)
    return [
        Interval(_to_datetime(s), _to_datetime(s + query.duration))
        for s in _bookable_starts(query, mentor)
    ]


def compute_slots(
    rules: ServiceRules,
    mentors: Sequence[MentorAvailability],
    now: datetime,
    start: datetime,
    end: datetime,
) -> list[Slot]:
    """Union of the mentors' bookable slots starting in [start, end), each naming who is free."""
    query = _Query.build(rules, now, start, end)
    free_mentors: defaultdict[_Micros, list[str]] = defaultdict(list)
    # Visiting mentors in id order leaves every slot's list already sorted.
    for mentor in _sorted_unique(mentors):
        mentor_id = mentor.mentor_id
        for s in _bookable_starts(query, mentor):
            free_mentors[s].append(mentor_id)
    return [
        Slot(_to_datetime(s), _to_datetime(s + query.duration), tuple(free_mentors[s]))
        for s in sorted(free_mentors)
    ]


def is_bookable(
    rules: ServiceRules, mentor: MentorAvailability, now: datetime, slot_start: datetime
) -> bool:
    """Whether `mentor_slots` would offer ``slot_start``; the booking service re-checks with it."""
    slot_start = _require_aware(slot_start, "slot start")
    query = _Query.build(rules, now, slot_start, slot_start + _MICROSECOND)
    return bool(_bookable_starts(query, mentor))


def availability_windows(
    mentor: MentorAvailability, start: datetime, end: datetime
) -> list[tuple[date, Interval]]:
    """The mentor's windows overlapping [start, end), unmerged, each with its local date."""
    low, high = _require_range(start, end)
    zone = _zone(mentor.timezone)
    first_day = _local_date_micros(low, zone) - _ONE_DAY
    last_day = _local_date_micros(high, zone) + _ONE_DAY
    return [
        (day, Interval(_to_datetime(opens), _to_datetime(closes)))
        for day, (opens, closes) in sorted(
            _dated_windows(mentor, zone, first_day, last_day), key=lambda item: item[1]
        )
        if opens < high and low < closes
    ]


# ---------------------------------------------------------------- the query


@dataclass(frozen=True, slots=True)
class _Query:
    """One validated request in integer microseconds: the rules plus the range of starts wanted."""

    duration: int
    step: int
    buffer_before: int
    buffer_after: int
    max_per_day: int | None
    earliest: int  # first start offered: max(start, now + min_notice)
    before: int  # starts must be earlier: min(end, now + horizon)
    anchor: int  # now + min_notice; window generation is anchored on it (see module doc)

    @classmethod
    def build(cls, rules: ServiceRules, now: datetime, start: datetime, end: datetime) -> _Query:
        low, high = _require_range(start, end)
        # In UTC before adding: on a zoned datetime `+` is wall-clock arithmetic, off by the
        # DST shift whenever the horizon crosses a transition.
        now = _require_aware(now, "now")
        notice_until = _to_micros(now + rules.min_notice)
        horizon_until = _to_micros(now + rules.horizon)
        return cls(
            duration=_span_micros(rules.duration),
            step=_span_micros(rules.step),
            buffer_before=_span_micros(rules.buffer_before),
            buffer_after=_span_micros(rules.buffer_after),
            max_per_day=rules.max_per_day,
            earliest=max(low, notice_until),
            before=min(high, horizon_until),
            anchor=notice_until,
        )


# ---------------------------------------------------------------- the engine


def _bookable_starts(query: _Query, mentor: MentorAvailability) -> list[_Micros]:
    """Every bookable start for one mentor in [earliest, before), ascending."""
    if query.earliest >= query.before or query.max_per_day == 0:
        return []
    zone = _zone(mentor.timezone)
    first_day = _local_date_micros(query.anchor, zone) - _ONE_DAY
    # Windows opening after before + duration cannot hold a slot that starts before `before`.
    last_day = _local_date_micros(query.before + query.duration, zone) + _ONE_DAY
    windows = _merged(span for _, span in _dated_windows(mentor, zone, first_day, last_day))
    return _sweep(windows, _blocked_starts(query, mentor, zone), query)


def _sweep(windows: list[_Span], blocked: list[_Span], query: _Query) -> list[_Micros]:
    """Walk each window's step grid, jumping over blocked spans; both lists sorted and disjoint.

    Starts only increase, so one pointer into ``blocked`` serves all windows: O(windows + blocked
    + slots) after sorting.
    """
    starts: list[_Micros] = []
    step, duration, earliest, before = query.step, query.duration, query.earliest, query.before
    blocked_count = len(blocked)
    cursor = 0
    for window_start, window_end in windows:
        stop = min(window_end - duration + 1, before)  # exclusive bound on starts
        start = _grid_at_or_after(max(window_start, earliest), window_start, step)
        while start < stop:
            while cursor < blocked_count and blocked[cursor][1] <= start:
                cursor += 1
            if cursor == blocked_count:
                starts.extend(range(start, stop, step))
                break
            blocked_from, blocked_until = blocked[cursor]
            if blocked_from <= start:
                start = _grid_at_or_after(blocked_until, window_start, step)
                continue
            grid = range(start, min(stop, blocked_from), step)
            starts.extend(grid)
            start += len(grid) * step
    return starts


def _blocked_starts(query: _Query, mentor: MentorAvailability, zone: ZoneInfo) -> list[_Span]:
    """Sorted, disjoint spans of starts ruled out by busy time or by a full day."""
    return _merged(_busy_blocks(query, mentor.busy) + list(_full_day_blocks(query, mentor, zone)))


def _busy_blocks(query: _Query, busy: Iterable[Interval]) -> list[_Span]:
    # [s - before, s + duration + after) overlaps [b0, b1)
    # iff b0 - duration - after < s < b1 + before. Instants are whole microseconds, so the open
    # lower bound becomes an inclusive one by adding 1. Conversions are inlined: this is the
    # engine's hottest loop after the sweep.
    reach_back = query.duration + query.buffer_after - 1
    reach_forward = query.buffer_before
    return [
        (
            (interval.start - _EPOCH) // _MICROSECOND - reach_back,
            (interval.end - _EPOCH) // _MICROSECOND + reach_forward,
        )
        for interval in busy
        if interval.start < interval.end  # an empty interval overlaps nothing
    ]


def _full_day_blocks(query: _Query, mentor: MentorAvailability, zone: ZoneInfo) -> Iterator[_Span]:
    """Local days whose bookings already reach max_per_day, as spans of UTC instants."""
    if query.max_per_day is None:
        return
    per_day = Counter(start.astimezone(zone).date() for start in mentor.booked_starts)
    for day, count in per_day.items():
        if count >= query.max_per_day:
            yield (
                _wall_to_micros(day, _MIDNIGHT, zone),
                _wall_to_micros(day + _ONE_DAY, _MIDNIGHT, zone),
            )


def _dated_windows(
    mentor: MentorAvailability, zone: ZoneInfo, first_day: date, last_day: date
) -> Iterator[tuple[date, _Span]]:
    """Windows starting on local dates first_day..last_day, in UTC; empty ones dropped."""
    by_weekday: list[list[tuple[time, time]]] = [[] for _ in range(7)]
    for rule in mentor.weekly:
        by_weekday[rule.weekday].append((rule.start, rule.end))
    overridden = {override.day: override.ranges for override in mentor.overrides}
    day = first_day
    while day <= last_day:
        ranges = overridden.get(day, by_weekday[day.weekday()])
        for opens, closes in ranges:
            closes_on = day if closes > opens else day + _ONE_DAY
            span = _wall_to_micros(day, opens, zone), _wall_to_micros(closes_on, closes, zone)
            if span[0] < span[1]:
                yield day, span
        day += _ONE_DAY


def _merged(spans: Iterable[_Span]) -> list[_Span]:
    """Sorts spans and fuses those that overlap or touch."""
    merged: list[_Span] = []
    ordered = iter(sorted(spans))
    current_start, current_end = next(ordered, (0, 0))  # (0, 0): no spans, appends nothing
    for start, end in ordered:
        if start > current_end:
            merged.append((current_start, current_end))
            current_start, current_end = start, end
        elif end > current_end:
            current_end = end
    if current_start < current_end:
        merged.append((current_start, current_end))
    return merged


def _grid_at_or_after(instant: int, origin: int, step: int) -> int:
    """The first point of the grid origin + k * step (k >= 0) that is not before ``instant``."""
    if instant <= origin:
        return origin
    return origin - (origin - instant) // step * step


def _sorted_unique(mentors: Sequence[MentorAvailability]) -> list[MentorAvailability]:
    ordered = sorted(mentors, key=lambda mentor: mentor.mentor_id)
    for previous, current in pairwise(ordered):
        if previous.mentor_id == current.mentor_id:
            raise AvailabilityError(f"mentor {current.mentor_id!r} is listed twice")
    return ordered


# ---------------------------------------------------------------- time conversions


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise AvailabilityError(f"unknown time zone {name!r}") from exc


@lru_cache(maxsize=65536)
def _wall_to_micros(day: date, wall: time, zone: ZoneInfo) -> _Micros:
    # Built field by field so a caller's fold=1 cannot sneak in: fold=0 gives the first occurrence
    # of an ambiguous wall time, and moves a non-existent one forward by the gap (PEP 495).
    local = datetime(
        day.year, day.month, day.day, wall.hour, wall.minute, wall.second, wall.microsecond, zone
    )
    return (local - _EPOCH) // _MICROSECOND


def _local_date_micros(instant: _Micros, zone: ZoneInfo) -> date:
    return _to_datetime(instant).astimezone(zone).date()


def _to_micros(instant: datetime) -> _Micros:
    return (instant - _EPOCH) // _MICROSECOND


def _to_datetime(instant: _Micros) -> datetime:
    return _EPOCH + timedelta(microseconds=instant)


def _span_micros(span: timedelta) -> int:
    return span // _MICROSECOND


# ---------------------------------------------------------------- validation


def _require_aware(instant: datetime, what: str) -> datetime:
    if not isinstance(instant, datetime):
        raise AvailabilityError(f"{what} must be a datetime, got {instant!r}")
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise AvailabilityError(f"{what} must be timezone-aware, got naive {instant.isoformat()}")
    return instant.astimezone(UTC)


def _require_wall_time(wall: time, what: str) -> None:
    if not isinstance(wall, time):
        raise AvailabilityError(f"{what} must be a time of day, got {wall!r}")
    if wall.tzinfo is not None:
        raise AvailabilityError(
            f"{what} must be a wall time without tzinfo (the mentor's zone applies), got {wall}"
        )


def _require_span(span: timedelta, what: str, *, allow_zero: bool) -> None:
    if not isinstance(span, timedelta):
        raise AvailabilityError(f"{what} must be a timedelta, got {span!r}")
    if allow_zero and span < timedelta(0):
        raise AvailabilityError(f"{what} must be zero or more, got {span}")
    if not allow_zero and span <= timedelta(0):
        raise AvailabilityError(f"{what} must be positive, got {span}")
    if span > MAX_SPAN:
        raise AvailabilityError(f"{what} of {span} is longer than the {MAX_SPAN.days}-day limit")


def _require_range(start: datetime, end: datetime) -> tuple[_Micros, _Micros]:
    start = _require_aware(start, "range start")
    end = _require_aware(end, "range end")
    if end < start:
        raise AvailabilityError(
            f"range ends ({end.isoformat()}) before it starts ({start.isoformat()})"
        )
    if end - start > MAX_SPAN:
        raise AvailabilityError(
            f"range {start.isoformat()} .. {end.isoformat()} is longer than the "
            f"{MAX_SPAN.days}-day limit"
        )
    return _to_micros(start), _to_micros(end)
