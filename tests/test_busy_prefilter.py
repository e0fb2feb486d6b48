"""The cheap pre-parse look: it may only skip events that the full parse finds outside the window."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.busy import busy_from_ical, position_outside

WINDOW_START = datetime(2027, 3, 1, tzinfo=UTC)
WINDOW_END = datetime(2027, 4, 1, tzinfo=UTC)
EXAMPLES = int(os.environ.get("SYNCD_HYPOTHESIS_EXAMPLES", "500"))

VTIMEZONE_NY = (
    "BEGIN:VTIMEZONE\r\nTZID:America/New_York\r\n"
    "BEGIN:STANDARD\r\nDTSTART:20271107T020000\r\nTZOFFSETFROM:-0400\r\nTZOFFSETTO:-0500\r\n"
    "RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n"
)


def calendar(event_lines: str, extra: str = "") -> str:
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n"
        + extra
        + "BEGIN:VEVENT\r\nUID:e1\r\nDTSTAMP:20270101T000000Z\r\n"
        + event_lines
        + "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )


def where(ics: str) -> str | None:
    return position_outside(ics, WINDOW_START, WINDOW_END)


def test_far_future_and_far_past_single_events_are_skipped() -> None:
    assert where(calendar("DTSTART:20270601T090000Z\r\nDTEND:20270601T100000Z\r\n")) == "after"
    assert (
        where(calendar("DTSTART;VALUE=DATE:20260101\r\nDTEND;VALUE=DATE:20260102\r\n")) == "before"
    )


def test_events_near_or_inside_the_window_are_left_to_the_parser() -> None:
    assert where(calendar("DTSTART:20270315T090000Z\r\nDTEND:20270315T100000Z\r\n")) is None
    # Within the two-day margin: a zone could move it into the window.
    assert where(calendar("DTSTART:20270402T230000\r\nDTEND:20270403T000000\r\n")) is None
    assert where(calendar("DTSTART:20270226T090000\r\nDTEND:20270227T100000\r\n")) is None
    # Starts long before, ends inside: overlaps.
    assert where(calendar("DTSTART:20260101T090000Z\r\nDTEND:20270310T100000Z\r\n")) is None


def test_anything_unusual_is_left_to_the_parser() -> None:
    recurring = "DTSTART:20260101T090000Z\r\nDTEND:20260101T100000Z\r\nRRULE:FREQ=WEEKLY\r\n"
    assert where(calendar(recurring)) is None
    assert where(calendar("DTSTART:20260101T090000Z\r\nDURATION:PT1H\r\n")) is None  # no DTEND
    assert where(calendar("DTEND:20260101T100000Z\r\n")) is None  # no DTSTART
    assert where("not a calendar at all") is None
    two = calendar("DTSTART:20260101T090000Z\r\nDTEND:20260101T100000Z\r\n")
    assert (
        where(two.replace("END:VCALENDAR", "BEGIN:VEVENT\r\nEND:VEVENT\r\nEND:VCALENDAR")) is None
    )


def test_timezone_definitions_do_not_count_as_the_event_start() -> None:
    ics = calendar(
        "DTSTART;TZID=America/New_York:20270315T090000\r\nDTEND;TZID=America/New_York:20270315T100000\r\n",
        extra=VTIMEZONE_NY,
    )
    assert where(ics) is None  # the VTIMEZONE's 2027-11-07 must not make it look "after"


def test_folded_lines_are_read() -> None:
    folded = "DTSTART;TZID=America/New_\r\n York:20270601T090000\r\nDTEND;TZID=America/New_York:20270601T100000\r\n"
    assert where(calendar(folded, extra=VTIMEZONE_NY)) == "after"


@st.composite
def single_events(draw: st.DrawFn) -> str:
    all_day = draw(st.booleans())
    day = date(2027, 3, 1) + timedelta(days=draw(st.integers(-120, 150)))
    length = draw(st.integers(0, 5))
    if all_day:
        end = day + timedelta(days=max(length, 1))
        return calendar(f"DTSTART;VALUE=DATE:{day:%Y%m%d}\r\nDTEND;VALUE=DATE:{end:%Y%m%d}\r\n")
    hour = draw(st.integers(0, 23))
    start = datetime(day.year, day.month, day.day, hour)
    finish = start + timedelta(hours=draw(st.integers(1, 30)), days=length)
    style = draw(st.sampled_from(["utc", "floating", "zoned"]))
    if style == "utc":
        return calendar(f"DTSTART:{start:%Y%m%dT%H%M%S}Z\r\nDTEND:{finish:%Y%m%dT%H%M%S}Z\r\n")
    if style == "floating":
        return calendar(f"DTSTART:{start:%Y%m%dT%H%M%S}\r\nDTEND:{finish:%Y%m%dT%H%M%S}\r\n")
    zone = "TZID=Pacific/Kiritimati"  # UTC+14: the furthest a zone moves a wall time
    return calendar(
        f"DTSTART;{zone}:{start:%Y%m%dT%H%M%S}\r\nDTEND;{zone}:{finish:%Y%m%dT%H%M%S}\r\n"
    )


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    ics=single_events(),
    default_zone=st.sampled_from(["UTC", "Pacific/Kiritimati", "Pacific/Pago_Pago"]),
)
def test_a_skipped_event_never_has_an_occurrence_in_the_window(ics: str, default_zone: str) -> None:
    verdict = where(ics)
    if verdict is None:
        return
    occurrences = busy_from_ical(
        ics, window_start=WINDOW_START, window_end=WINDOW_END, default_timezone=default_zone
    )
    assert occurrences == []
