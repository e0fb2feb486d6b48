"""syncd.busy: every busy rule against hand-written iCalendar and hand-computed instants."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from syncd.busy import BusyOccurrence, MalformedCalendarData, busy_from_ical

MARCH_START = datetime(2024, 3, 1, tzinfo=UTC)
APRIL_START = datetime(2024, 4, 1, tzinfo=UTC)
BOOKING_ID = "0123456789abcdef0123456789abcdef"


def calendar(*events: str, extra: str = "") -> str:
    body = "".join(events)
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n{extra}{body}END:VCALENDAR\r\n"


def vevent(uid: str, *lines: str) -> str:
    inner = "".join(f"{line}\r\n" for line in lines)
    return f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20240101T000000Z\r\n{inner}END:VEVENT\r\n"


def busy(
    ics: str,
    start: datetime = MARCH_START,
    end: datetime = APRIL_START,
    zone: str = "UTC",
    mentors: tuple[str, ...] = (),
) -> list[BusyOccurrence]:
    return busy_from_ical(
        ics, window_start=start, window_end=end, default_timezone=zone, mentor_emails=mentors
    )


def spans(occurrences: list[BusyOccurrence]) -> list[tuple[datetime, datetime]]:
    return [(item.start, item.end) for item in occurrences]


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_single_event_blocks_its_utc_interval() -> None:
    ics = calendar(vevent("a", "DTSTART:20240305T100000Z", "DTEND:20240305T110000Z"))
    result = busy(ics)
    assert spans(result) == [(utc(2024, 3, 5, 10), utc(2024, 3, 5, 11))]
    assert result[0].uid == "a"
    assert result[0].recurrence_id is None
    assert result[0].booking_id is None


def test_weekly_rrule_blocks_every_occurrence_not_only_the_first() -> None:
    ics = calendar(
        vevent("w", "DTSTART:20240304T090000Z", "DTEND:20240304T100000Z", "RRULE:FREQ=WEEKLY")
    )
    starts = [item.start for item in busy(ics)]
    assert starts == [utc(2024, 3, day, 9) for day in (4, 11, 18, 25)]


def test_recurring_occurrences_carry_their_recurrence_id() -> None:
    ics = calendar(
        vevent("w", "DTSTART:20240304T090000Z", "DTEND:20240304T100000Z", "RRULE:FREQ=WEEKLY")
    )
    assert busy(ics)[1].recurrence_id == "2024-03-11T09:00:00+00:00"


def test_exdate_removes_an_occurrence() -> None:
    ics = calendar(
        vevent(
            "w",
            "DTSTART:20240304T090000Z",
            "DTEND:20240304T100000Z",
            "RRULE:FREQ=WEEKLY;COUNT=4",
            "EXDATE:20240311T090000Z",
        )
    )
    assert [item.start.day for item in busy(ics)] == [4, 18, 25]


def test_rdate_adds_an_occurrence() -> None:
    ics = calendar(
        vevent(
            "w",
            "DTSTART:20240304T090000Z",
            "DTEND:20240304T100000Z",
            "RRULE:FREQ=WEEKLY;COUNT=2",
            "RDATE:20240320T150000Z",
        )
    )
    assert spans(busy(ics)) == [
        (utc(2024, 3, 4, 9), utc(2024, 3, 4, 10)),
        (utc(2024, 3, 11, 9), utc(2024, 3, 11, 10)),
        (utc(2024, 3, 20, 15), utc(2024, 3, 20, 16)),
    ]


def _weekly_with_override(*override: str) -> str:
    master = vevent(
        "w", "DTSTART:20240304T090000Z", "DTEND:20240304T100000Z", "RRULE:FREQ=WEEKLY;COUNT=3"
    )
    return calendar(master, vevent("w", "RECURRENCE-ID:20240311T090000Z", *override))


def test_recurrence_id_override_moves_an_occurrence() -> None:
    ics = _weekly_with_override("DTSTART:20240312T140000Z", "DTEND:20240312T153000Z")
    assert spans(busy(ics)) == [
        (utc(2024, 3, 4, 9), utc(2024, 3, 4, 10)),
        (utc(2024, 3, 12, 14), utc(2024, 3, 12, 15, 30)),
        (utc(2024, 3, 18, 9), utc(2024, 3, 18, 10)),
    ]


def test_override_moved_out_of_the_window_no_longer_blocks_inside_it() -> None:
    ics = _weekly_with_override("DTSTART:20240410T090000Z", "DTEND:20240410T100000Z")
    assert [item.start.day for item in busy(ics)] == [4, 18]


def test_override_moved_into_the_window_blocks_there() -> None:
    ics = _weekly_with_override("DTSTART:20240311T090000Z", "DTEND:20240311T100000Z")
    # Window holds only 5..15 March: the moved instance lands inside it.
    moved_in = _weekly_with_override("DTSTART:20240306T120000Z", "DTEND:20240306T130000Z")
    window = (utc(2024, 3, 5), utc(2024, 3, 8))
    assert busy(ics, *window) == []
    assert spans(busy(moved_in, *window)) == [(utc(2024, 3, 6, 12), utc(2024, 3, 6, 13))]


def test_cancelled_instance_does_not_block() -> None:
    ics = _weekly_with_override(
        "DTSTART:20240311T090000Z", "DTEND:20240311T100000Z", "STATUS:CANCELLED"
    )
    assert [item.start.day for item in busy(ics)] == [4, 18]


def test_transparent_instance_does_not_block() -> None:
    ics = _weekly_with_override(
        "DTSTART:20240311T090000Z", "DTEND:20240311T100000Z", "TRANSP:TRANSPARENT"
    )
    assert [item.start.day for item in busy(ics)] == [4, 18]


def test_transparent_event_does_not_block() -> None:
    ics = calendar(
        vevent("t", "DTSTART:20240305T100000Z", "DTEND:20240305T110000Z", "TRANSP:TRANSPARENT")
    )
    assert busy(ics) == []


def test_opaque_event_blocks() -> None:
    ics = calendar(
        vevent("o", "DTSTART:20240305T100000Z", "DTEND:20240305T110000Z", "TRANSP:OPAQUE")
    )
    assert len(busy(ics)) == 1


def test_cancelled_event_does_not_block() -> None:
    ics = calendar(
        vevent("c", "DTSTART:20240305T100000Z", "DTEND:20240305T110000Z", "STATUS:CANCELLED")
    )
    assert busy(ics) == []


def _meeting_with(attendee_line: str) -> str:
    return calendar(
        vevent(
            "m",
            "DTSTART:20240305T100000Z",
            "DTEND:20240305T110000Z",
            "ORGANIZER:mailto:boss@example.org",
            attendee_line,
        )
    )


def test_event_declined_by_the_mentor_does_not_block() -> None:
    ics = _meeting_with("ATTENDEE;PARTSTAT=DECLINED;CN=Mentor:MAILTO:Mentor@Example.org")
    assert busy(ics, mentors=("mentor@example.org",)) == []


def test_event_declined_by_someone_else_still_blocks() -> None:
    ics = _meeting_with("ATTENDEE;PARTSTAT=DECLINED:mailto:other@example.org")
    assert len(busy(ics, mentors=("mentor@example.org",))) == 1


def test_event_accepted_by_the_mentor_blocks() -> None:
    ics = _meeting_with("ATTENDEE;PARTSTAT=ACCEPTED:mailto:mentor@example.org")
    assert len(busy(ics, mentors=("mentor@example.org",))) == 1


def test_all_day_event_is_read_in_the_default_zone() -> None:
    ics = calendar(vevent("d", "DTSTART;VALUE=DATE:20240305", "DTEND;VALUE=DATE:20240306"))
    # Berlin is UTC+1 in early March: local midnight is 23:00 UTC the day before.
    assert spans(busy(ics, zone="Europe/Berlin")) == [(utc(2024, 3, 4, 23), utc(2024, 3, 5, 23))]


def test_floating_time_is_read_in_the_default_zone() -> None:
    ics = calendar(vevent("f", "DTSTART:20240305T090000", "DTEND:20240305T100000"))
    # Tokyo is UTC+9 all year.
    assert spans(busy(ics, zone="Asia/Tokyo")) == [(utc(2024, 3, 5, 0), utc(2024, 3, 5, 1))]


CUSTOM_VTIMEZONE = (
    "BEGIN:VTIMEZONE\r\nTZID:My Office Time\r\n"
    "BEGIN:STANDARD\r\nDTSTART:19700101T000000\r\nTZOFFSETFROM:+0530\r\n"
    "TZOFFSETTO:+0530\r\nTZNAME:OFF\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n"
)


def test_custom_vtimezone_with_non_iana_tzid() -> None:
    ics = calendar(
        vevent(
            "z",
            "DTSTART;TZID=My Office Time:20240305T093000",
            "DTEND;TZID=My Office Time:20240305T103000",
        ),
        extra=CUSTOM_VTIMEZONE,
    )
    assert spans(busy(ics)) == [(utc(2024, 3, 5, 4), utc(2024, 3, 5, 5))]


def test_unknown_tzid_falls_back_to_default_zone_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ics = calendar(
        vevent(
            "u",
            "DTSTART;TZID=Nowhere/Land:20240305T090000",
            "DTEND;TZID=Nowhere/Land:20240305T100000",
        )
    )
    with caplog.at_level(logging.WARNING, logger="syncd.busy"):
        result = busy(ics, zone="Asia/Tokyo")
    assert spans(result) == [(utc(2024, 3, 5, 0), utc(2024, 3, 5, 1))]
    assert "Nowhere/Land" in caplog.text


def test_duration_without_dtend() -> None:
    ics = calendar(vevent("d", "DTSTART:20240305T100000Z", "DURATION:PT45M"))
    assert spans(busy(ics)) == [(utc(2024, 3, 5, 10), utc(2024, 3, 5, 10, 45))]


def test_date_without_dtend_lasts_one_day() -> None:
    ics = calendar(vevent("d", "DTSTART;VALUE=DATE:20240305"))
    assert spans(busy(ics)) == [(utc(2024, 3, 5), utc(2024, 3, 6))]


def test_datetime_without_dtend_is_zero_length_and_blocks_nothing() -> None:
    ics = calendar(vevent("d", "DTSTART:20240305T100000Z"))
    assert busy(ics) == []


def test_weekly_new_york_event_stays_at_nine_local_across_dst() -> None:
    ics = calendar(
        vevent(
            "ny",
            "DTSTART;TZID=America/New_York:20240301T090000",
            "DTEND;TZID=America/New_York:20240301T100000",
            "RRULE:FREQ=WEEKLY;COUNT=3",
        )
    )
    # 2024-03-10 is the US spring-forward: EST (UTC-5) before, EDT (UTC-4) after.
    assert [item.start for item in busy(ics)] == [
        utc(2024, 3, 1, 14),
        utc(2024, 3, 8, 14),
        utc(2024, 3, 15, 13),
    ]


def test_syncd_event_recognised_by_uid() -> None:
    uid = f"syncd-{BOOKING_ID}@syncd"
    ics = calendar(vevent(uid, "DTSTART:20240305T100000Z", "DTEND:20240305T110000Z"))
    assert busy(ics)[0].booking_id == BOOKING_ID


def test_syncd_event_recognised_by_private_property() -> None:
    ics = calendar(
        vevent(
            "foreign-uid",
            "DTSTART:20240305T100000Z",
            "DTEND:20240305T110000Z",
            f"X-SYNCD-BOOKING-ID:{BOOKING_ID}",
        )
    )
    assert busy(ics)[0].booking_id == BOOKING_ID


def test_todo_and_journal_are_ignored() -> None:
    todo = vevent("t", "DTSTART:20240305T100000Z", "DUE:20240305T110000Z").replace(
        "VEVENT", "VTODO"
    )
    journal = vevent("j", "DTSTART:20240305T100000Z").replace("VEVENT", "VJOURNAL")
    assert busy(calendar(todo, journal)) == []


def test_infinite_daily_rule_is_bounded_by_the_window() -> None:
    ics = calendar(
        vevent("d", "DTSTART:20200101T120000Z", "DTEND:20200101T130000Z", "RRULE:FREQ=DAILY")
    )
    result = busy(ics, utc(2024, 3, 1), utc(2024, 3, 31))
    assert len(result) == 30
    assert result[0].start == utc(2024, 3, 1, 12)
    assert result[-1].start == utc(2024, 3, 30, 12)


def test_occurrence_overlapping_the_window_edge_is_kept_whole() -> None:
    ics = calendar(vevent("e", "DTSTART:20240229T230000Z", "DTEND:20240301T010000Z"))
    assert spans(busy(ics)) == [(utc(2024, 2, 29, 23), utc(2024, 3, 1, 1))]


def test_event_outside_the_window_is_dropped() -> None:
    ics = calendar(vevent("e", "DTSTART:20240401T000000Z", "DTEND:20240401T010000Z"))
    assert busy(ics) == []


@pytest.mark.parametrize(
    "ics",
    [
        "this is not a calendar",
        "",
        calendar(vevent("bad", "DTSTART:2024030xT100000Z", "DTEND:20240305T110000Z")),
        calendar(vevent("nostart", "DTEND:20240305T110000Z")),
    ],
    ids=["garbage", "empty", "bad-date", "no-dtstart"],
)
def test_malformed_input_raises(ics: str) -> None:
    with pytest.raises(MalformedCalendarData):
        busy(ics)


def test_naive_window_is_refused() -> None:
    ics = calendar(vevent("a", "DTSTART:20240305T100000Z", "DTEND:20240305T110000Z"))
    with pytest.raises(ValueError, match="aware"):
        busy(ics, datetime(2024, 3, 1), APRIL_START)
