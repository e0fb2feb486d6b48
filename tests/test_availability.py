"""Unit tests for the availability engine; every expected value is worked out by hand.

2024-06-02 is a Sunday, 2024-06-03 a Monday. DST days used (all Sundays):
New York 03-10 (02:00 EST -> 03:00 EDT) and 11-03 (02:00 EDT -> 01:00 EST); Madrid 03-31
(02:00 CET -> 03:00 CEST) and 10-27 (03:00 CEST -> 02:00 CET); Lord Howe 10-06 (02:00 +10:30 ->
02:30 +11:00) and 04-07 (02:00 +11:00 -> 01:30 +10:30). Kolkata is +05:30 all year.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from syncd.availability import (
    AvailabilityError,
    DateOverride,
    Interval,
    MentorAvailability,
    ServiceRules,
    Slot,
    WeeklyRule,
    availability_windows,
    compute_slots,
    is_bookable,
    mentor_slots,
)
from syncd.errors import UserError

SUN, MON, TUE = 6, 0, 1
MINUTES = timedelta(minutes=1)


def utc(month: int, day: int, hour: int = 0, minute: int = 0, year: int = 2024) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def service(duration: int = 60, step: int = 60, **extra: Any) -> ServiceRules:
    return replace(ServiceRules(duration=duration * MINUTES, step=step * MINUTES), **extra)


def mentor(
    *weekly: tuple[int, str, str],
    zone: str = "UTC",
    mentor_id: str = "m",
    overrides: tuple[DateOverride, ...] = (),
    busy: tuple[Interval, ...] = (),
    booked: tuple[datetime, ...] = (),
) -> MentorAvailability:
    rules = tuple(WeeklyRule(day, wall(opens), wall(closes)) for day, opens, closes in weekly)
    return MentorAvailability(mentor_id, zone, rules, overrides, busy, booked)


def wall(text: str) -> time:
    return time.fromisoformat(text)


def starts(
    rules: ServiceRules,
    who: MentorAvailability,
    now: datetime,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[datetime]:
    """Starts offered between ``start`` (default: now) and ``end`` (default: a week later)."""
    start = start or now
    end = end or start + timedelta(days=7)
    return [slot.start for slot in mentor_slots(rules, who, now, start, end)]


SUNDAY_NOON = utc(6, 2, 12)


# ---------------------------------------------------------------- weekly hours


def test_weekly_hours_give_every_fitting_start() -> None:
    monday = mentor((MON, "09:00", "11:00"))
    assert starts(service(60, 30), monday, SUNDAY_NOON) == [
        utc(6, 3, 9),
        utc(6, 3, 9, 30),
        utc(6, 3, 10),
    ]


def test_slots_are_intervals_of_the_service_duration() -> None:
    monday = mentor((MON, "09:00", "10:00"))
    slots = mentor_slots(service(45, 60), monday, SUNDAY_NOON, SUNDAY_NOON, utc(6, 4))
    assert slots == [Interval(utc(6, 3, 9), utc(6, 3, 9, 45))]


def test_weekly_hours_repeat_every_week() -> None:
    monday = mentor((MON, "09:00", "10:00"))
    found = starts(service(), monday, SUNDAY_NOON, end=SUNDAY_NOON + timedelta(days=14))
    assert found == [utc(6, 3, 9), utc(6, 10, 9)]


def test_window_crossing_midnight_continues_into_the_next_day() -> None:
    sunday_night = mentor((SUN, "22:00", "02:00"))
    assert starts(service(), sunday_night, SUNDAY_NOON) == [
        utc(6, 2, 22),
        utc(6, 2, 23),
        utc(6, 3, 0),
        utc(6, 3, 1),
    ]


def test_window_ending_at_midnight_runs_to_the_end_of_the_day() -> None:
    evening = mentor((MON, "18:00", "00:00"))
    assert starts(service(120, 120), evening, SUNDAY_NOON) == [
        utc(6, 3, 18),
        utc(6, 3, 20),
        utc(6, 3, 22),
    ]


def test_step_aligns_to_the_window_start_not_the_hour() -> None:
    kolkata_morning = mentor((MON, "09:10", "10:30"), zone="Asia/Kolkata")
    # 09:10 and 09:40 IST; 10:10 + 30 min would end after 10:30.
    assert starts(service(30, 30), kolkata_morning, SUNDAY_NOON) == [
        utc(6, 3, 3, 40),
        utc(6, 3, 4, 10),
    ]


def test_touching_windows_merge_into_one() -> None:
    split_morning = mentor((MON, "09:00", "10:00"), (MON, "10:00", "11:00"))
    assert starts(service(90, 30), split_morning, SUNDAY_NOON) == [utc(6, 3, 9), utc(6, 3, 9, 30)]


def test_overlapping_windows_merge_and_align_to_the_earlier_start() -> None:
    overlapping = mentor((MON, "09:45", "11:00"), (MON, "09:00", "10:00"))
    assert starts(service(60, 60), overlapping, SUNDAY_NOON) == [utc(6, 3, 9), utc(6, 3, 10)]


def test_window_running_into_the_next_days_window_merges_across_midnight() -> None:
    night = mentor((SUN, "22:00", "00:00"), (MON, "00:00", "02:00"))
    assert starts(service(120, 60), night, SUNDAY_NOON) == [
        utc(6, 2, 22),
        utc(6, 2, 23),
        utc(6, 3, 0),
    ]


def test_equal_start_and_end_is_a_full_day() -> None:
    all_monday = mentor((MON, "06:00", "06:00"))
    found = starts(service(60, 60), all_monday, SUNDAY_NOON)
    assert found[0] == utc(6, 3, 6)
    assert found[-1] == utc(6, 4, 5)
    assert len(found) == 24


def test_chained_windows_align_to_the_chain_start_near_now_whatever_the_range() -> None:
    around_the_clock = mentor(*((day, "00:00", "00:00") for day in range(7)))
    rules = service(30, 50)
    now = utc(6, 3, 10)
    # Windows are generated from the local day before now: the chain starts 06-02 00:00, and
    # 06-05 00:00 is 4320 minutes later = 86.4 steps, so the grid there is 00:30, 01:20, 02:10.
    found = starts(rules, around_the_clock, now, utc(6, 5), utc(6, 5, 3))
    assert found == [utc(6, 5, 0, 30), utc(6, 5, 1, 20), utc(6, 5, 2, 10)]
    assert is_bookable(rules, around_the_clock, now, utc(6, 5, 0, 30))
    assert not is_bookable(rules, around_the_clock, now, utc(6, 5, 0, 0))


# ---------------------------------------------------------------- overrides


def test_override_replaces_that_dates_hours() -> None:
    afternoon = DateOverride(date(2024, 6, 3), ((wall("14:00"), wall("15:00")),))
    monday = mentor((MON, "09:00", "10:00"), overrides=(afternoon,))
    found = starts(service(), monday, SUNDAY_NOON, end=SUNDAY_NOON + timedelta(days=14))
    assert found == [utc(6, 3, 14), utc(6, 10, 9)]


def test_override_without_ranges_makes_the_date_unavailable() -> None:
    day_off = DateOverride(date(2024, 6, 3), ())
    monday_tuesday = mentor((MON, "09:00", "10:00"), (TUE, "09:00", "10:00"), overrides=(day_off,))
    assert starts(service(), monday_tuesday, SUNDAY_NOON, end=utc(6, 5)) == [utc(6, 4, 9)]


def test_override_adds_hours_to_a_day_without_weekly_rules() -> None:
    extra = DateOverride(date(2024, 6, 4), ((wall("08:00"), wall("09:00")),))
    monday = mentor((MON, "09:00", "10:00"), overrides=(extra,))
    assert starts(service(), monday, SUNDAY_NOON, end=utc(6, 5)) == [utc(6, 3, 9), utc(6, 4, 8)]


def test_override_only_replaces_windows_that_start_on_its_date() -> None:
    monday_off = DateOverride(date(2024, 6, 3), ())
    sunday_night = mentor((SUN, "22:00", "02:00"), overrides=(monday_off,))
    assert starts(service(), sunday_night, SUNDAY_NOON) == [
        utc(6, 2, 22),
        utc(6, 2, 23),
        utc(6, 3, 0),
        utc(6, 3, 1),
    ]


def test_override_range_may_cross_midnight() -> None:
    late = DateOverride(date(2024, 6, 3), ((wall("23:00"), wall("01:00")),))
    monday = mentor((MON, "09:00", "10:00"), overrides=(late,))
    assert starts(service(), monday, SUNDAY_NOON, end=utc(6, 5)) == [utc(6, 3, 23), utc(6, 4, 0)]


# ---------------------------------------------------------------- busy time and buffers

MORNING = (MON, "09:00", "12:00")


def test_busy_interval_touching_a_slot_does_not_block_it() -> None:
    busy = (Interval(utc(6, 3, 10), utc(6, 3, 11)),)
    monday = mentor(MORNING, busy=busy)
    assert starts(service(), monday, SUNDAY_NOON) == [utc(6, 3, 9), utc(6, 3, 11)]


def test_busy_interval_overlapping_by_a_microsecond_blocks() -> None:
    just_into_nine = utc(6, 3, 9, 59) + timedelta(seconds=59, microseconds=999_999)
    busy = (Interval(just_into_nine, utc(6, 3, 10, 0)),)
    monday = mentor(MORNING, busy=busy)
    assert starts(service(), monday, SUNDAY_NOON) == [utc(6, 3, 10), utc(6, 3, 11)]


def test_empty_busy_interval_blocks_nothing() -> None:
    busy = (Interval(utc(6, 3, 9, 30), utc(6, 3, 9, 30)),)
    monday = mentor(MORNING, busy=busy)
    assert starts(service(), monday, SUNDAY_NOON) == [utc(6, 3, 9), utc(6, 3, 10), utc(6, 3, 11)]


def test_after_a_busy_interval_starts_resume_on_the_window_grid() -> None:
    busy = (Interval(utc(6, 3, 9, 15), utc(6, 3, 9, 50)),)
    monday = mentor((MON, "09:10", "11:10"), busy=busy)
    # 09:10 and 09:40 overlap the busy time; the grid resumes at 10:10, not at 09:50.
    assert starts(service(30, 30), monday, SUNDAY_NOON) == [utc(6, 3, 10, 10), utc(6, 3, 10, 40)]


def test_buffer_before_keeps_a_gap_after_busy_time() -> None:
    busy = (Interval(utc(6, 3, 10, 30), utc(6, 3, 11)),)
    monday = mentor(MORNING, busy=busy)
    rules = service(30, 30, buffer_before=15 * MINUTES)
    # 11:00 needs 10:45-11:30 clear; 10:00 needs 09:45-10:30, which only touches the busy time.
    assert starts(rules, monday, SUNDAY_NOON) == [
        utc(6, 3, 9),
        utc(6, 3, 9, 30),
        utc(6, 3, 10),
        utc(6, 3, 11, 30),
    ]


def test_buffer_after_keeps_a_gap_before_busy_time() -> None:
    busy = (Interval(utc(6, 3, 10, 30), utc(6, 3, 11)),)
    monday = mentor(MORNING, busy=busy)
    rules = service(30, 30, buffer_after=15 * MINUTES)
    # 10:00 needs 10:00-10:45 clear; 11:00 needs 11:00-11:45, which only touches the busy time.
    assert starts(rules, monday, SUNDAY_NOON) == [
        utc(6, 3, 9),
        utc(6, 3, 9, 30),
        utc(6, 3, 11),
        utc(6, 3, 11, 30),
    ]


def test_buffers_may_reach_outside_the_window() -> None:
    monday = mentor(MORNING)
    rules = service(60, 60, buffer_before=30 * MINUTES, buffer_after=30 * MINUTES)
    assert starts(rules, monday, SUNDAY_NOON) == [utc(6, 3, 9), utc(6, 3, 10), utc(6, 3, 11)]


def test_busy_intervals_in_any_order_and_overlapping_each_other() -> None:
    busy = (
        Interval(utc(6, 3, 11, 30), utc(6, 3, 12)),
        Interval(utc(6, 3, 9, 0), utc(6, 3, 9, 45)),
        Interval(utc(6, 3, 9, 30), utc(6, 3, 10)),
    )
    monday = mentor(MORNING, busy=busy)
    assert starts(service(30, 30), monday, SUNDAY_NOON) == [
        utc(6, 3, 10),
        utc(6, 3, 10, 30),
        utc(6, 3, 11),
    ]


# ---------------------------------------------------------------- notice, horizon, range


def test_min_notice_drops_starts_before_now_plus_notice_but_keeps_the_grid() -> None:
    monday = mentor(MORNING)
    now = utc(6, 3, 8, 20)
    rules = service(30, 30, min_notice=timedelta(minutes=70))
    # Earliest 09:30 exactly, which is offered; the grid stays on :00 and :30.
    assert starts(rules, monday, now)[:2] == [utc(6, 3, 9, 30), utc(6, 3, 10)]


def test_now_inside_a_window_keeps_steps_aligned_to_the_window_start() -> None:
    monday = mentor((MON, "09:10", "10:30"))
    assert starts(service(30, 30), monday, utc(6, 3, 9, 20), end=utc(6, 4)) == [utc(6, 3, 9, 40)]


def test_horizon_excludes_starts_at_or_after_now_plus_horizon() -> None:
    monday = mentor(MORNING)
    rules = service(30, 30, horizon=timedelta(hours=2))
    assert starts(rules, monday, utc(6, 3, 8)) == [utc(6, 3, 9), utc(6, 3, 9, 30)]


def test_only_starts_inside_the_requested_range_are_returned() -> None:
    monday = mentor(MORNING)
    found = starts(service(60, 30), monday, SUNDAY_NOON, utc(6, 3, 9, 45), utc(6, 3, 10, 30))
    assert found == [utc(6, 3, 10)]


def test_empty_range_gives_nothing() -> None:
    monday = mentor(MORNING)
    assert starts(service(), monday, SUNDAY_NOON, utc(6, 3, 9), utc(6, 3, 9)) == []


def test_aware_non_utc_inputs_are_read_as_instants_and_results_are_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    monday = mentor((MON, "09:00", "10:00"))
    slots = mentor_slots(
        service(), monday, datetime(2024, 6, 2, 14, tzinfo=plus_two), SUNDAY_NOON, utc(6, 4)
    )
    assert slots == [Interval(utc(6, 3, 9), utc(6, 3, 10))]
    assert slots[0].start.tzinfo is UTC


def test_zoned_now_adds_notice_and_horizon_in_real_time_across_a_transition() -> None:
    # 2024-03-09 12:00 EST = 17:00 UTC; two real days later is 03-11 17:00 UTC (13:00 EDT),
    # not 12:00 EDT = 16:00 UTC as wall-clock arithmetic would say.
    now = datetime(2024, 3, 9, 12, tzinfo=ZoneInfo("America/New_York"))
    monday = mentor((MON, "16:00", "18:00"))
    rules = service(30, 30, horizon=timedelta(days=2))
    assert starts(rules, monday, now) == [utc(3, 11, 16), utc(3, 11, 16, 30)]


# ---------------------------------------------------------------- per-day limit


def test_day_at_its_limit_offers_nothing_other_days_do() -> None:
    weekdays = mentor((MON, "09:00", "10:00"), (TUE, "09:00", "10:00"), booked=(utc(6, 3, 15),))
    rules = service(max_per_day=1)
    assert starts(rules, weekdays, SUNDAY_NOON, end=utc(6, 5)) == [utc(6, 4, 9)]


def test_day_below_its_limit_still_offers_slots() -> None:
    monday = mentor((MON, "09:00", "10:00"), booked=(utc(6, 3, 15),))
    assert starts(service(max_per_day=2), monday, SUNDAY_NOON, end=utc(6, 4)) == [utc(6, 3, 9)]


def test_zero_per_day_offers_nothing() -> None:
    monday = mentor((MON, "09:00", "10:00"))
    assert starts(service(max_per_day=0), monday, SUNDAY_NOON) == []


def test_bookings_count_on_their_local_date_in_the_mentors_zone() -> None:
    # 06-04 02:00 UTC is 06-03 22:00 in New York: it fills Monday, not Tuesday.
    new_york = mentor(
        (MON, "09:00", "10:00"),
        (TUE, "09:00", "10:00"),
        zone="America/New_York",
        booked=(utc(6, 4, 2),),
    )
    assert starts(service(max_per_day=1), new_york, SUNDAY_NOON, end=utc(6, 5)) == [utc(6, 4, 13)]


def test_slot_counts_on_the_local_date_it_starts_not_its_windows_date() -> None:
    sunday_night = mentor((SUN, "22:00", "02:00"), booked=(utc(6, 3, 12),))
    assert starts(service(max_per_day=1), sunday_night, SUNDAY_NOON) == [
        utc(6, 2, 22),
        utc(6, 2, 23),
    ]


def test_full_day_follows_the_23_hour_local_day_of_a_spring_transition() -> None:
    around_the_clock = mentor(
        *((day, "00:00", "00:00") for day in range(7)),
        zone="America/New_York",
        booked=(utc(3, 10, 18),),
    )
    # 2024-03-10 in New York runs from 05:00 UTC that day to 04:00 UTC the next. The chain of
    # windows starts 03-08 00:00 EST (05:00 UTC) so hourly starts fall on the UTC hour.
    found = starts(
        service(max_per_day=1), around_the_clock, utc(3, 9, 12), utc(3, 10), utc(3, 11, 8)
    )
    assert found == [utc(3, 10, h) for h in range(5)] + [utc(3, 11, h) for h in range(4, 8)]


# ---------------------------------------------------------------- union across mentors


def test_slots_union_across_mentors_and_name_who_is_free() -> None:
    early = mentor((MON, "09:00", "11:00"), mentor_id="b")
    late = mentor((MON, "10:00", "12:00"), mentor_id="a")
    slots = compute_slots(service(), [early, late], SUNDAY_NOON, SUNDAY_NOON, utc(6, 4))
    assert slots == [
        Slot(utc(6, 3, 9), utc(6, 3, 10), ("b",)),
        Slot(utc(6, 3, 10), utc(6, 3, 11), ("a", "b")),
        Slot(utc(6, 3, 11), utc(6, 3, 12), ("a",)),
    ]


def test_mentor_busy_at_a_shared_slot_is_left_out_of_it() -> None:
    free = mentor(MORNING, mentor_id="free")
    busy = mentor(MORNING, mentor_id="busy", busy=(Interval(utc(6, 3, 10), utc(6, 3, 11)),))
    slots = compute_slots(service(), [free, busy], SUNDAY_NOON, SUNDAY_NOON, utc(6, 4))
    assert [slot.mentors for slot in slots] == [("busy", "free"), ("free",), ("busy", "free")]


def test_no_mentors_no_slots() -> None:
    assert compute_slots(service(), [], SUNDAY_NOON, SUNDAY_NOON, utc(6, 4)) == []


def test_the_same_mentor_twice_is_refused() -> None:
    twice = [mentor(MORNING, mentor_id="x"), mentor(MORNING, mentor_id="x")]
    with pytest.raises(AvailabilityError, match="'x' is listed twice"):
        compute_slots(service(), twice, SUNDAY_NOON, SUNDAY_NOON, utc(6, 4))


# ---------------------------------------------------------------- is_bookable


def test_is_bookable_accepts_an_offered_start() -> None:
    assert is_bookable(service(), mentor(MORNING), SUNDAY_NOON, utc(6, 3, 10))


@pytest.mark.parametrize(
    "slot_start",
    [
        pytest.param(utc(6, 3, 9, 30), id="off the step grid"),
        pytest.param(utc(6, 3, 11, 30), id="runs past the window"),
        pytest.param(utc(6, 3, 10), id="busy"),
        pytest.param(utc(6, 3, 8), id="outside the hours"),
    ],
)
def test_is_bookable_refuses(slot_start: datetime) -> None:
    busy = (Interval(utc(6, 3, 10, 30), utc(6, 3, 10, 45)),)
    assert not is_bookable(service(), mentor(MORNING, busy=busy), SUNDAY_NOON, slot_start)


def test_is_bookable_respects_notice() -> None:
    rules = service(min_notice=timedelta(hours=2))
    assert not is_bookable(rules, mentor(MORNING), utc(6, 3, 8, 1), utc(6, 3, 10))
    assert is_bookable(rules, mentor(MORNING), utc(6, 3, 8), utc(6, 3, 10))


# ---------------------------------------------------------------- availability windows


def test_availability_windows_are_dated_in_local_time_and_unmerged() -> None:
    new_york = mentor((SUN, "22:00", "02:00"), (MON, "02:00", "03:00"), zone="America/New_York")
    windows = availability_windows(new_york, utc(6, 3, 5), utc(6, 3, 6, 30))
    assert windows == [
        (date(2024, 6, 2), Interval(utc(6, 3, 2), utc(6, 3, 6))),
        (date(2024, 6, 3), Interval(utc(6, 3, 6), utc(6, 3, 7))),
    ]


def test_availability_windows_leave_out_windows_only_touching_the_range() -> None:
    monday = mentor((MON, "09:00", "10:00"), (MON, "11:00", "12:00"))
    windows = availability_windows(monday, utc(6, 3, 10), utc(6, 3, 11))
    assert windows == []


# ---------------------------------------------------------------- daylight saving time


@pytest.mark.parametrize(
    ("zone", "weekly", "duration", "step", "expected"),
    [
        pytest.param(
            "America/New_York",
            (SUN, "02:30", "04:00"),  # 02:30 does not exist: it becomes 03:30 EDT = 07:30 UTC
            15,
            15,
            [utc(3, 10, 7, 30), utc(3, 10, 7, 45)],
            id="new-york-start-in-gap",
        ),
        pytest.param(
            "America/New_York",
            (SUN, "01:00", "04:00"),  # 01:00 EST = 06:00 UTC to 04:00 EDT = 08:00 UTC: 2 hours
            60,
            60,
            [utc(3, 10, 6), utc(3, 10, 7)],
            id="new-york-window-across-gap",
        ),
        pytest.param(
            "Europe/Madrid",
            (SUN, "02:00", "03:30"),  # 02:00 becomes 03:00 CEST = 01:00 UTC; 03:30 CEST = 01:30
            30,
            30,
            [utc(3, 31, 1)],
            id="madrid-start-at-gap",
        ),
        pytest.param(
            "Australia/Lord_Howe",
            (SUN, "02:00", "03:00"),  # 02:00 becomes 02:30 +11:00 = 15:30 UTC the day before
            15,
            15,
            [utc(10, 5, 15, 30), utc(10, 5, 15, 45)],
            id="lord-howe-start-at-gap",
        ),
        pytest.param(
            "Australia/Lord_Howe",
            (SUN, "02:15", "03:00"),  # 02:15 moves 30 minutes forward: 02:45 +11:00 = 15:45 UTC
            15,
            15,
            [utc(10, 5, 15, 45)],
            id="lord-howe-start-inside-gap",
        ),
    ],
)
def test_spring_forward_moves_missing_wall_times_forward_by_the_gap(
    zone: str,
    weekly: tuple[int, str, str],
    duration: int,
    step: int,
    expected: list[datetime],
) -> None:
    found = starts(
        service(duration, step), mentor(weekly, zone=zone), expected[0] - timedelta(days=2)
    )
    assert found == expected


@pytest.mark.parametrize(
    ("zone", "weekly", "duration", "step", "expected"),
    [
        pytest.param(
            "America/New_York",
            (SUN, "01:00", "03:00"),  # 01:00 EDT = 05:00 UTC to 03:00 EST = 08:00 UTC: 3 hours
            60,
            60,
            [utc(11, 3, 5), utc(11, 3, 6), utc(11, 3, 7)],
            id="new-york-window-across-overlap",
        ),
        pytest.param(
            "America/New_York",
            (SUN, "01:30", "01:45"),  # both ends ambiguous: the first (EDT) occurrence
            15,
            15,
            [utc(11, 3, 5, 30)],
            id="new-york-window-inside-overlap",
        ),
        pytest.param(
            "Europe/Madrid",
            (SUN, "02:30", "03:30"),  # 02:30 CEST = 00:30 UTC to 03:30 CET = 02:30 UTC
            60,
            30,
            [utc(10, 27, 0, 30), utc(10, 27, 1), utc(10, 27, 1, 30)],
            id="madrid-window-across-overlap",
        ),
        pytest.param(
            "Australia/Lord_Howe",
            (SUN, "01:30", "02:30"),  # 01:30 +11:00 = 14:30 UTC to 02:30 +10:30 = 16:00 UTC
            30,
            30,
            [utc(4, 6, 14, 30), utc(4, 6, 15), utc(4, 6, 15, 30)],
            id="lord-howe-window-across-overlap",
        ),
    ],
)
def test_fall_back_takes_the_first_occurrence_of_ambiguous_wall_times(
    zone: str,
    weekly: tuple[int, str, str],
    duration: int,
    step: int,
    expected: list[datetime],
) -> None:
    found = starts(
        service(duration, step), mentor(weekly, zone=zone), expected[0] - timedelta(days=2)
    )
    assert found == expected


def test_kolkata_half_hour_offset_and_midnight_crossing() -> None:
    kolkata = mentor((MON, "23:00", "01:00"), zone="Asia/Kolkata")
    # Monday 23:00 IST = 17:30 UTC; the window ends Tuesday 01:00 IST = 19:30 UTC.
    assert starts(service(60, 60), kolkata, SUNDAY_NOON) == [utc(6, 3, 17, 30), utc(6, 3, 18, 30)]


def test_kolkata_has_no_transition_on_new_york_and_madrid_dst_days() -> None:
    kolkata = mentor((SUN, "02:30", "03:30"), zone="Asia/Kolkata")
    for sunday in (date(2024, 3, 10), date(2024, 3, 31), date(2024, 10, 27), date(2024, 11, 3)):
        now = datetime.combine(sunday, time(0), tzinfo=UTC) - timedelta(days=2)
        expected = datetime.combine(sunday, time(2, 30), tzinfo=UTC) - timedelta(
            hours=5, minutes=30
        )
        assert starts(service(60, 60), kolkata, now, end=now + timedelta(days=3)) == [expected]


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("build", "message"),
    [
        pytest.param(
            lambda: mentor(MORNING, zone="Mars/Olympus_Mons"), "unknown time zone", id="zone"
        ),
        pytest.param(lambda: mentor(MORNING, zone=""), "unknown time zone", id="empty-zone"),
        pytest.param(lambda: WeeklyRule(7, wall("09:00"), wall("10:00")), "weekday", id="weekday"),
        pytest.param(
            lambda: WeeklyRule(MON, time(9, tzinfo=UTC), wall("10:00")),
            "without tzinfo",
            id="aware-wall-time",
        ),
        pytest.param(
            lambda: Interval(datetime(2024, 6, 3, 9), utc(6, 3, 10)), "timezone-aware", id="naive"
        ),
        pytest.param(
            lambda: Interval(utc(6, 3, 10), utc(6, 3, 9)), "ends .* before it starts", id="reversed"
        ),
        pytest.param(lambda: service(0), "duration must be positive", id="zero-duration"),
        pytest.param(lambda: service(60, -15), "step must be positive", id="negative-step"),
        pytest.param(
            lambda: service(buffer_before=-MINUTES), "buffer_before must be zero or more", id="buf"
        ),
        pytest.param(
            lambda: service(horizon=timedelta(days=401)), "400-day limit", id="huge-horizon"
        ),
        pytest.param(lambda: service(max_per_day=-1), "max_per_day", id="negative-limit"),
        pytest.param(
            lambda: mentor(MORNING, booked=(datetime(2024, 6, 3, 9),)),
            "booked start must be timezone-aware",
            id="naive-booking",
        ),
        pytest.param(
            lambda: mentor(
                MORNING,
                overrides=(DateOverride(date(2024, 6, 3), ()), DateOverride(date(2024, 6, 3), ())),
            ),
            "two overrides for 2024-06-03",
            id="duplicate-override",
        ),
    ],
)
def test_bad_values_are_refused_when_built(build: Callable[[], object], message: str) -> None:
    with pytest.raises(AvailabilityError, match=message):
        build()


@pytest.mark.parametrize(
    ("now", "start", "end", "message"),
    [
        pytest.param(
            datetime(2024, 6, 2, 12), SUNDAY_NOON, utc(6, 4), "now must be timezone-aware", id="now"
        ),
        pytest.param(
            SUNDAY_NOON, datetime(2024, 6, 2), utc(6, 4), "range start must be", id="naive-start"
        ),
        pytest.param(SUNDAY_NOON, utc(6, 4), utc(6, 3), "before it starts", id="end-before-start"),
        pytest.param(
            SUNDAY_NOON, utc(6, 4), utc(6, 4) + timedelta(days=401), "400-day", id="absurd-range"
        ),
    ],
)
def test_bad_queries_are_refused(
    now: datetime, start: datetime, end: datetime, message: str
) -> None:
    with pytest.raises(AvailabilityError, match=message):
        mentor_slots(service(), mentor(MORNING), now, start, end)
    with pytest.raises(AvailabilityError, match=message):
        compute_slots(service(), [mentor(MORNING)], now, start, end)


def test_is_bookable_refuses_a_naive_start() -> None:
    with pytest.raises(AvailabilityError, match="slot start must be timezone-aware"):
        is_bookable(service(), mentor(MORNING), SUNDAY_NOON, datetime(2024, 6, 3, 9))


def test_availability_error_is_a_value_error_and_a_user_error() -> None:
    with pytest.raises(ValueError, match="unknown time zone") as caught:
        mentor(MORNING, zone="Nowhere/Special")
    assert isinstance(caught.value, UserError)
