from datetime import time

import pytest

from syncd.errors import UserError
from syncd.hours import TimeRange, parse_days, parse_hours_spec, parse_time_range


def test_weekday_range_expands_to_each_day() -> None:
    parsed = parse_hours_spec("mon-fri 09:00-13:00")
    assert [day for day, _ in parsed] == [0, 1, 2, 3, 4]
    assert {span for _, span in parsed} == {TimeRange(time(9), time(13))}


def test_several_ranges_and_lists() -> None:
    parsed = parse_hours_spec("mon,wed 09:00-12:00 13:00-17:30")
    assert parsed == [
        (0, TimeRange(time(9), time(12))),
        (0, TimeRange(time(13), time(17, 30))),
        (2, TimeRange(time(9), time(12))),
        (2, TimeRange(time(13), time(17, 30))),
    ]


def test_crossing_midnight_keeps_end_before_start() -> None:
    assert parse_hours_spec("sun 22:00-02:00") == [(6, TimeRange(time(22), time(2)))]


def test_24_00_means_until_midnight() -> None:
    assert parse_time_range("18:00-24:00") == TimeRange(time(18), time(0))


def test_day_range_wraps_over_the_weekend() -> None:
    assert parse_days("fri-mon") == [4, 5, 6, 0]
    assert parse_days("daily") == [0, 1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize(
    "spec",
    [
        "mon 9-12",
        "funday 09:00-10:00",
        "mon 25:00-26:00",
        "mon 09:00-09:00",
        "mon",
        "mon-tue-wed 09:00-10:00",
    ],
)
def test_bad_specs_are_refused_with_a_message(spec: str) -> None:
    with pytest.raises(UserError) as error:
        parse_hours_spec(spec)
    assert (
        spec.split()[0] in str(error.value)
        or "HH:MM" in str(error.value)
        or "time" in str(error.value)
    )


def test_whole_day() -> None:
    assert parse_time_range("00:00-24:00") == TimeRange(time(0), time(0))
