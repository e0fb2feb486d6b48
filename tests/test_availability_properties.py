"""Property tests: the availability engine against the brute-force reference.

Examples per test: SYNCD_HYPOTHESIS_EXAMPLES (default 500).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.availability import (
    DateOverride,
    Interval,
    MentorAvailability,
    ServiceRules,
    WeeklyRule,
    availability_windows,
    compute_slots,
    is_bookable,
    mentor_slots,
)
from tests.availability_reference import (
    available_minutes,
    local_date,
    reference_compute_slots,
    reference_mentor_slots,
)

EXAMPLES = int(os.environ.get("SYNCD_HYPOTHESIS_EXAMPLES", "500"))
PROPERTY = settings(max_examples=EXAMPLES, deadline=None)

# Zones and their 2024 transition days (spring, autumn); Kolkata and UTC have none.
TRANSITIONS = {
    "America/New_York": [date(2024, 3, 10), date(2024, 11, 3)],
    "Europe/Madrid": [date(2024, 3, 31), date(2024, 10, 27)],
    "Australia/Lord_Howe": [date(2024, 10, 6), date(2024, 4, 7)],
    "Asia/Kolkata": [],
    "UTC": [],
}
ZONES = sorted(TRANSITIONS)


@dataclass(frozen=True)
class Scenario:
    rules: ServiceRules
    zone: str  # most mentors live here, so the base day is near its transitions
    now: datetime
    start: datetime
    end: datetime
    base: datetime  # midnight UTC of the day everything is generated around


def minutes(low: int, high: int) -> st.SearchStrategy[timedelta]:
    return st.integers(low, high).map(lambda n: timedelta(minutes=n))


def favouring(common: list[int], low: int, high: int) -> st.SearchStrategy[timedelta]:
    """Minutes, often one of a few round values so windows, buffers and busy times line up."""
    return st.one_of(st.sampled_from(common), st.integers(low, high)).map(
        lambda n: timedelta(minutes=n)
    )


# Round values make touching windows and slots that exactly fit likely; the small hours are
# where the transitions are.
wall_times = st.one_of(
    st.sampled_from([time(h, m) for h in (0, 1, 2, 3, 9, 12, 22, 23) for m in (0, 30)]),
    st.builds(time, hour=st.integers(0, 23), minute=st.sampled_from([0, 15, 30, 45])),
    st.builds(time, hour=st.integers(0, 23), minute=st.integers(0, 59)),
)
service_rules = st.builds(
    ServiceRules,
    duration=favouring([15, 30, 60, 90], 1, 240),
    buffer_before=favouring([0, 15, 30], 0, 60),
    buffer_after=favouring([0, 15, 30], 0, 60),
    min_notice=favouring([0, 60], 0, 24 * 60),
    horizon=favouring([5 * 24 * 60], 0, 5 * 24 * 60),
    step=favouring([15, 30, 60, 45, 7], 1, 120),
    max_per_day=st.one_of(st.none(), st.integers(0, 3)),
)


@st.composite
def base_day(draw: st.DrawFn, zone: str) -> date:
    near_a_transition = draw(st.booleans())
    if TRANSITIONS[zone] and near_a_transition:
        return draw(st.sampled_from(TRANSITIONS[zone])) + timedelta(days=draw(st.integers(-2, 1)))
    return draw(st.dates(date(2024, 1, 1), date(2026, 12, 31)))


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    zone = draw(st.sampled_from(ZONES))
    base = datetime.combine(draw(base_day(zone)), time(0), tzinfo=UTC)
    now = base + draw(minutes(-24 * 60, 24 * 60)) + timedelta(seconds=draw(st.integers(0, 59)))
    start = now + draw(minutes(-24 * 60, 2 * 24 * 60))
    end = start + draw(minutes(0, 3 * 24 * 60))
    return Scenario(draw(service_rules), zone, now, start, end, base)


@st.composite
def weekly_rules(draw: st.DrawFn) -> tuple[WeeklyRule, ...]:
    if draw(st.booleans()):
        # The same hours every day: with 24-hour or touching ranges windows chain across days.
        opens, closes = draw(wall_times), draw(wall_times)
        return tuple(WeeklyRule(weekday, opens, closes) for weekday in range(7))
    rule = st.builds(WeeklyRule, st.integers(0, 6), wall_times, wall_times)
    return tuple(draw(st.lists(rule, max_size=6)))


@st.composite
def mentors(draw: st.DrawFn, scenario: Scenario, mentor_id: str = "m") -> MentorAvailability:
    base = scenario.base
    zone = draw(st.one_of(st.just(scenario.zone), st.sampled_from(ZONES)))
    override_days = draw(
        st.lists(st.integers(-2, 5), max_size=3, unique=True).map(
            lambda shifts: [base.date() + timedelta(days=n) for n in shifts]
        )
    )
    ranges = st.lists(st.tuples(wall_times, wall_times), max_size=2).map(tuple)
    overrides = tuple(DateOverride(day, draw(ranges)) for day in override_days)
    instants = st.one_of(
        st.integers(-2 * 24 * 4, 6 * 24 * 4).map(lambda n: base + timedelta(minutes=15 * n)),
        minutes(-2 * 24 * 60, 6 * 24 * 60).map(lambda offset: base + offset),
    )
    busy = draw(
        st.lists(
            st.builds(
                lambda at, length: Interval(at, at + length),
                instants,
                favouring([0, 15, 30, 60], 0, 360),
            ),
            max_size=8,
        )
    )
    booked = draw(st.lists(instants, max_size=4))
    weekly = draw(weekly_rules())
    return MentorAvailability(mentor_id, zone, weekly, overrides, tuple(busy), tuple(booked))


@st.composite
def scenario_with_mentor(draw: st.DrawFn) -> tuple[Scenario, MentorAvailability]:
    scenario = draw(scenarios())
    return scenario, draw(mentors(scenario))


@st.composite
def scenario_with_mentors(draw: st.DrawFn) -> tuple[Scenario, list[MentorAvailability]]:
    scenario = draw(scenarios())
    ids = draw(st.lists(st.sampled_from("abcde"), min_size=1, max_size=3, unique=True))
    return scenario, [draw(mentors(scenario, mentor_id)) for mentor_id in ids]


@PROPERTY
@given(scenario_with_mentor())
def test_mentor_slots_match_the_reference(case: tuple[Scenario, MentorAvailability]) -> None:
    s, mentor = case
    expected = reference_mentor_slots(s.rules, mentor, s.now, s.start, s.end)
    assert mentor_slots(s.rules, mentor, s.now, s.start, s.end) == expected


@PROPERTY
@given(scenario_with_mentors())
def test_compute_slots_match_the_reference(case: tuple[Scenario, list[MentorAvailability]]) -> None:
    s, group = case
    expected = reference_compute_slots(s.rules, group, s.now, s.start, s.end)
    assert compute_slots(s.rules, group, s.now, s.start, s.end) == expected


@PROPERTY
@given(scenario_with_mentor(), st.data())
def test_is_bookable_agrees_with_mentor_slots(
    case: tuple[Scenario, MentorAvailability], data: st.DataObject
) -> None:
    s, mentor = case
    offered = {
        slot.start for slot in mentor_slots(s.rules, mentor, s.now, s.now, s.now + s.rules.horizon)
    }
    probes = [s.now + data.draw(minutes(-60, 5 * 24 * 60)) for _ in range(5)]
    if offered:
        probes += data.draw(st.lists(st.sampled_from(sorted(offered)), max_size=5))
    for probe in probes:
        assert is_bookable(s.rules, mentor, s.now, probe) == (probe in offered), probe


@PROPERTY
@given(scenario_with_mentor())
def test_availability_windows_cover_the_reference_minutes(
    case: tuple[Scenario, MentorAvailability],
) -> None:
    s, mentor = case
    first = local_date(s.start, mentor.timezone) - timedelta(days=1)
    last = local_date(s.end, mentor.timezone) + timedelta(days=1)
    expected = {m for m in available_minutes(mentor, first, last) if s.start <= m < s.end}
    covered = set()
    for _, window in availability_windows(mentor, s.start, s.end):
        minute = window.start
        while minute < window.end:
            if s.start <= minute < s.end:
                covered.add(minute)
            minute += timedelta(minutes=1)
    assert covered == expected
