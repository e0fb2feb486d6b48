"""syncd.invites: every .ics is checked with two independent parsers (icalendar and ical)."""

from __future__ import annotations

import dataclasses
import unicodedata
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

import icalendar
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ical.calendar_stream import IcsCalendarStream

from syncd.identity import booking_uid
from syncd.invites import (
    InviteDetails,
    InviteError,
    Method,
    build_calendar,
    build_message,
)

BOOKING_ID = "0123456789abcdef0123456789abcdef"
EXPECTED_UID = "syncd-0123456789abcdef0123456789abcdef@syncd"
FROM = "noreply@syncd.example"
# 8 March 2027 is a Monday, before US daylight saving time starts (Sunday 14 March 2027).
START = datetime(2027, 3, 8, 14, 0, tzinfo=UTC)
END = datetime(2027, 3, 8, 15, 0, tzinfo=UTC)
STAMP = datetime(2027, 3, 1, 12, 30, 15, tzinfo=UTC)
MEETING = "https://meet.example/r/abc?x=1&y=2"
DASH = "\u2013"  # en dash between start and end times
EXPECTED_HEADERS = ["Subject", "From", "To", "Date", "Message-ID", "MIME-Version", "Content-Type"]


def make_details(**overrides: Any) -> InviteDetails:
    values: dict[str, Any] = {
        "booking_id": BOOKING_ID,
        "sequence": 0,
        "start": START,
        "end": END,
        "service_name": "Career chat",
        "mentor_name": "Ana Mentor",
        "mentor_email": "ana@mentors.example",
        "student_name": "Sam Student",
        "student_email": "sam@students.example",
        "student_timezone": "America/New_York",
        "meeting_url": MEETING,
        "description": "Bring your CV.",
        "organizer_email": "bookings@syncd.example",
        "organizer_name": "Mentoring Team",
        "dtstamp": STAMP,
    }
    values.update(overrides)
    return InviteDetails(**values)


def parse_icalendar(ics: str) -> tuple[Any, Any]:
    # Any: icalendar types property values as a wide union; the assertions check them instead.
    calendar = icalendar.Calendar.from_ical(ics)
    [event] = calendar.walk("VEVENT")
    return calendar, event


def parse_ical(ics: str) -> Any:
    return IcsCalendarStream.calendar_from_ics(ics)


def roundtrip(message: EmailMessage) -> EmailMessage:
    parsed = message_from_bytes(message.as_bytes(), policy=default_policy)
    assert isinstance(parsed, EmailMessage)
    return parsed


def attendees_by_email(event: Any) -> dict[str, Any]:
    return {str(attendee): attendee for attendee in event["ATTENDEE"]}


def text_body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def html_body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


# --- the calendar object -------------------------------------------------------------------------


def test_request_read_by_icalendar() -> None:
    calendar, event = parse_icalendar(build_calendar(make_details(), "REQUEST"))
    assert calendar["METHOD"] == "REQUEST"
    assert calendar["VERSION"] == "2.0"
    assert calendar["PRODID"]
    assert event["UID"] == EXPECTED_UID == booking_uid(BOOKING_ID)
    assert event["SEQUENCE"] == 0
    assert event["STATUS"] == "CONFIRMED"
    for name, expected in (("DTSTART", START), ("DTEND", END), ("DTSTAMP", STAMP)):
        value = event[name].dt
        assert value == expected
        assert value.utcoffset() == timedelta(0)
    assert event["SUMMARY"] == "Career chat with Ana Mentor"
    assert MEETING in event["DESCRIPTION"]
    assert "Bring your CV." in event["DESCRIPTION"]
    assert event["LOCATION"] == MEETING
    assert event["URL"] == MEETING
    assert str(event["ORGANIZER"]) == "mailto:bookings@syncd.example"
    assert event["ORGANIZER"].params["CN"] == "Mentoring Team"


def test_request_attendees_read_by_icalendar() -> None:
    _, event = parse_icalendar(build_calendar(make_details(), "REQUEST"))
    attendees = attendees_by_email(event)
    assert set(attendees) == {"mailto:sam@students.example", "mailto:ana@mentors.example"}
    student = attendees["mailto:sam@students.example"].params
    assert student["CN"] == "Sam Student"
    assert student["ROLE"] == "REQ-PARTICIPANT"
    assert student["PARTSTAT"] == "NEEDS-ACTION"
    assert student["RSVP"] == "TRUE"
    assert attendees["mailto:ana@mentors.example"].params["CN"] == "Ana Mentor"


def test_request_read_by_ical() -> None:
    calendar = parse_ical(build_calendar(make_details(), "REQUEST"))
    assert calendar.method == "REQUEST"
    [event] = calendar.events
    assert event.uid == EXPECTED_UID
    assert event.sequence == 0
    assert event.status == "CONFIRMED"
    assert (event.dtstart, event.dtend, event.dtstamp) == (START, END, STAMP)
    assert event.dtstart.utcoffset() == timedelta(0)
    assert event.summary == "Career chat with Ana Mentor"
    assert event.organizer.uri == "mailto:bookings@syncd.example"
    assert event.organizer.common_name == "Mentoring Team"
    student = next(a for a in event.attendees if a.uri == "mailto:sam@students.example")
    assert (student.common_name, student.role, student.status) == (
        "Sam Student",
        "REQ-PARTICIPANT",
        "NEEDS-ACTION",
    )
    assert student.rsvp is True
    assert {a.uri for a in event.attendees} == {
        "mailto:sam@students.example",
        "mailto:ana@mentors.example",
    }


def test_ics_is_crlf_folded_at_75_octets_with_utc_times() -> None:
    long_name = "Ü" * 80  # 160 octets: must be folded
    ics = build_calendar(make_details(service_name=long_name), "REQUEST")
    assert ics.endswith("\r\n")
    lines = ics.split("\r\n")[:-1]
    assert "\n" not in "".join(lines)
    assert all(len(line.encode("utf-8")) <= 75 for line in lines)
    assert "DTSTART:20270308T140000Z" in lines
    assert "DTEND:20270308T150000Z" in lines
    assert "DTSTAMP:20270301T123015Z" in lines
    assert lines[0] == "BEGIN:VCALENDAR" and lines[-1] == "END:VCALENDAR"
    _, event = parse_icalendar(ics)
    assert event["SUMMARY"] == f"{long_name} with Ana Mentor"


def test_non_utc_input_is_sent_in_utc() -> None:
    from zoneinfo import ZoneInfo

    berlin = ZoneInfo("Europe/Berlin")
    details = make_details(
        start=datetime(2027, 3, 8, 15, 0, tzinfo=berlin),
        end=datetime(2027, 3, 8, 16, tzinfo=berlin),
    )
    ics = build_calendar(details, "REQUEST")
    assert "DTSTART:20270308T140000Z\r\n" in ics
    assert parse_ical(ics).events[0].dtstart == START


def test_cancel_read_by_both_parsers() -> None:
    ics = build_calendar(make_details(sequence=2), "CANCEL")
    calendar, event = parse_icalendar(ics)
    assert calendar["METHOD"] == "CANCEL"
    assert event["STATUS"] == "CANCELLED"
    assert event["UID"] == EXPECTED_UID
    assert event["SEQUENCE"] == 2
    assert "mailto:sam@students.example" in attendees_by_email(event)
    other = parse_ical(ics)
    assert other.method == "CANCEL"
    [other_event] = other.events
    assert (other_event.uid, other_event.sequence, other_event.status) == (
        EXPECTED_UID,
        2,
        "CANCELLED",
    )


def test_reschedule_keeps_uid_and_raises_sequence() -> None:
    first = make_details()
    moved = dataclasses.replace(
        first, sequence=1, start=START + timedelta(days=1), end=END + timedelta(days=1)
    )
    _, before = parse_icalendar(build_calendar(first, "REQUEST"))
    _, after = parse_icalendar(build_calendar(moved, "REQUEST"))
    assert before["UID"] == after["UID"] == EXPECTED_UID
    assert after["SEQUENCE"] > before["SEQUENCE"]
    assert after["DTSTART"].dt == datetime(2027, 3, 9, 14, 0, tzinfo=UTC)
    message = build_message(moved, "REQUEST", from_address=FROM)
    assert message["Subject"].startswith("Updated invitation: Career chat with Ana Mentor on ")
    assert message["Message-ID"] != build_message(first, "REQUEST", from_address=FROM)["Message-ID"]


def test_without_meeting_link_there_is_no_location() -> None:
    ics = build_calendar(make_details(meeting_url=None, description=None), "REQUEST")
    _, event = parse_icalendar(ics)
    assert "LOCATION" not in event and "URL" not in event
    assert parse_ical(ics).events[0].location is None


# --- the email -----------------------------------------------------------------------------------


def test_message_structure_is_imip() -> None:
    details = make_details()
    message = roundtrip(build_message(details, "REQUEST", from_address=FROM))
    assert message.get_content_type() == "multipart/mixed"
    alternative, attachment = message.iter_parts()
    assert alternative.get_content_type() == "multipart/alternative"
    plain, html, calendar = alternative.iter_parts()
    assert (plain.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    assert calendar.get_content_type() == "text/calendar"
    assert calendar.get_param("method") == "REQUEST"
    assert str(calendar.get_param("charset")).lower() == "utf-8"
    assert attachment.get_content_type() == "application/ics"
    assert attachment.get_filename() == "invite.ics"
    assert attachment.get_content_disposition() == "attachment"
    expected = build_calendar(details, "REQUEST")
    assert attachment.get_content().decode("utf-8") == expected
    assert calendar.get_content().replace("\r\n", "\n") == expected.replace("\r\n", "\n")


def test_cancel_message_has_cancel_method_and_subject() -> None:
    message = roundtrip(build_message(make_details(sequence=1), "CANCEL", from_address=FROM))
    [calendar] = [p for p in message.walk() if p.get_content_type() == "text/calendar"]
    assert calendar.get_param("method") == "CANCEL"
    assert parse_ical(calendar.get_content()).method == "CANCEL"
    assert message["Subject"] == (
        "Cancelled: Career chat with Ana Mentor on Monday 8 March 2027, 09:00 (America/New_York)"
    )
    assert "cancelled" in text_body(message)


def test_headers_and_subject() -> None:
    message = roundtrip(build_message(make_details(), "REQUEST", from_address=FROM))
    assert list(message.keys()) == EXPECTED_HEADERS
    assert message["Subject"] == (
        "Invitation: Career chat with Ana Mentor on Monday 8 March 2027, 09:00 (America/New_York)"
    )
    assert message["To"].addresses[0].display_name == "Sam Student"
    assert message["To"].addresses[0].addr_spec == "sam@students.example"
    assert message["From"].addresses[0].addr_spec == FROM
    assert message["Date"].datetime == STAMP
    assert message["Message-ID"].endswith("@syncd.example>")


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        # EST, UTC-5: before the switch on Sunday 14 March 2027.
        (START, END, f"Monday 8 March 2027, 09:00{DASH}10:00 (America/New_York)"),
        # EDT, UTC-4: the same wall time is one UTC hour earlier a week later.
        (
            datetime(2027, 3, 15, 13, 0, tzinfo=UTC),
            datetime(2027, 3, 15, 14, 0, tzinfo=UTC),
            f"Monday 15 March 2027, 09:00{DASH}10:00 (America/New_York)",
        ),
        # The night of the switch: 01:30 EST to 03:30 EDT is one real hour.
        (
            datetime(2027, 3, 14, 6, 30, tzinfo=UTC),
            datetime(2027, 3, 14, 7, 30, tzinfo=UTC),
            f"Sunday 14 March 2027, 01:30{DASH}03:30 (America/New_York)",
        ),
    ],
)
def test_bodies_show_student_local_time_across_dst(
    start: datetime, end: datetime, expected: str
) -> None:
    message = build_message(make_details(start=start, end=end), "REQUEST", from_address=FROM)
    assert expected in text_body(message)
    assert expected in html_body(message)


def test_session_over_local_midnight_names_both_days() -> None:
    details = make_details(
        student_timezone="Asia/Tokyo",
        start=datetime(2027, 3, 8, 14, 30, tzinfo=UTC),
        end=datetime(2027, 3, 8, 15, 30, tzinfo=UTC),
    )
    body = text_body(build_message(details, "REQUEST", from_address=FROM))
    assert f"Monday 8 March 2027, 23:30 {DASH} Tuesday 9 March 2027, 00:30 (Asia/Tokyo)" in body


def test_bodies_name_the_mentor_and_link() -> None:
    message = build_message(make_details(), "REQUEST", from_address=FROM)
    assert "Ana Mentor" in text_body(message)
    assert MEETING in text_body(message)
    assert 'href="https://meet.example/r/abc?x=1&amp;y=2"' in html_body(message)


def test_html_escapes_every_user_value() -> None:
    details = make_details(
        mentor_name="<script>alert(1)</script>",
        student_name='Bob "&" <b>',
        service_name="<img src=x onerror=alert(2)>",
        description="</p><iframe>",
    )
    html = html_body(build_message(details, "REQUEST", from_address=FROM))
    for raw in ("<script>", "<img", "<iframe>", "<b>", "</p><"):
        assert raw not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Bob &quot;&amp;&quot; &lt;b&gt;" in html


@pytest.mark.parametrize("field", ["student_name", "mentor_name", "service_name", "organizer_name"])
@pytest.mark.parametrize(
    "attack",
    ["Eve\r\nBcc: x@evil.example", "Eve\nBcc: x@evil.example", "Eve\rBcc: x@evil.example"],
)
def test_header_injection_adds_no_header(field: str, attack: str) -> None:
    details = make_details(**{field: attack})
    raw = build_message(details, "REQUEST", from_address=FROM).as_bytes()
    message = roundtrip(build_message(details, "REQUEST", from_address=FROM))
    assert list(message.keys()) == EXPECTED_HEADERS
    assert b"\nBcc:" not in raw
    assert [a.addr_spec for a in message["To"].addresses] == ["sam@students.example"]
    assert "evil" not in message["From"].addresses[0].addr_spec
    _, event = parse_icalendar(build_calendar(details, "REQUEST"))
    assert len(event["ATTENDEE"]) == 2
    assert "BCC" not in event


def test_identical_input_gives_identical_bytes() -> None:
    first = build_message(make_details(), "REQUEST", from_address=FROM).as_bytes()
    again = build_message(make_details(), "REQUEST", from_address=FROM).as_bytes()
    assert first == again


# --- refused input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"student_timezone": "Mars/Olympus_Mons"}, "Mars/Olympus_Mons"),
        ({"student_timezone": "../../etc/passwd"}, "time zone"),
        ({"start": datetime(2027, 3, 8, 14, 0)}, "aware"),
        ({"end": START}, "not after"),
        ({"sequence": -1}, "SEQUENCE"),
        ({"booking_id": "not-a-booking"}, "booking id"),
        ({"student_email": "sam@x.example\r\nBcc: e@evil.example"}, "student_email"),
        ({"mentor_email": "no-at-sign"}, "mentor_email"),
        ({"meeting_url": "javascript:alert(1)"}, "meeting_url"),
        ({"service_name": " \r\n "}, "service_name"),
    ],
)
def test_bad_details_are_refused_with_a_value_error(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(InviteError, match=message) as caught:
        make_details(**overrides)
    assert isinstance(caught.value, ValueError)


def test_unknown_method_is_refused() -> None:
    with pytest.raises(InviteError):
        build_calendar(make_details(), "PUBLISH")  # type: ignore[arg-type]


def test_bad_from_address_is_refused() -> None:
    with pytest.raises(InviteError):
        build_message(make_details(), "REQUEST", from_address="a@b.example\nBcc: c@d.example")


# --- property: any name round-trips ------------------------------------------------------------

# Anything a user could type or paste, control characters included; never lone surrogates,
# which Python strings allow but no encoding can carry.
any_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
_BREAKING = {"Cc", "Zl", "Zp"}


def squeeze(text: str) -> str:
    return "".join(text.split())


def expected_display(name: str) -> str:
    """A display name as a reader should see it: breaks become spaces, runs of space collapse."""
    spaced = "".join(" " if unicodedata.category(c) in _BREAKING else c for c in name)
    return " ".join(spaced.split())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    student=any_text,
    mentor=any_text,
    service=any_text,
    method=st.sampled_from(["REQUEST", "CANCEL"]),
)
def test_any_names_round_trip_with_exactly_the_expected_headers(
    student: str, mentor: str, service: str, method: Method
) -> None:
    # A leading letter keeps every name non-empty once cleaned, which the builder requires.
    student, mentor, service = "S" + student, "M" + mentor, "V" + service
    details = make_details(student_name=student, mentor_name=mentor, service_name=service)
    message = roundtrip(build_message(details, method, from_address=FROM))

    assert list(message.keys()) == EXPECTED_HEADERS
    [to] = message["To"].addresses
    assert to.addr_spec == "sam@students.example"
    # Whitespace is compared loosely: when CPython 3.11 folds a long non-ASCII header into several
    # encoded words it can drop a space at the fold (gh-144156), and its parser can add one between
    # adjacent encoded words (gh-128110). Every other character must survive.
    assert squeeze(to.display_name) == squeeze(expected_display(student))
    subject = str(message["Subject"])
    assert squeeze(f"{expected_display(service)} with {expected_display(mentor)} on ") in squeeze(
        subject
    )
    assert not any(unicodedata.category(c) in _BREAKING for c in subject + to.display_name)

    ics = build_calendar(details, method)
    assert parse_ical(ics).events[0].uid == EXPECTED_UID
    _, event = parse_icalendar(ics)
    assert event["SUMMARY"] == f"{expected_display(service)} with {expected_display(mentor)}"


def test_short_non_ascii_names_round_trip_exactly() -> None:
    details = make_details(student_name="Zoë Ångström", mentor_name="José Müller")
    message = roundtrip(build_message(details, "REQUEST", from_address=FROM))
    assert message["To"].addresses[0].display_name == "Zoë Ångström"
    assert message["Subject"] == (
        "Invitation: Career chat with José Müller on Monday 8 March 2027, 09:00 (America/New_York)"
    )


def test_description_keeps_lines_but_loses_control_characters() -> None:
    details = make_details(description="Line one\r\nLine\x00 two\x1b[31m", organizer_name="\r\n")
    ics = build_calendar(details, "REQUEST")
    assert "\x00" not in ics and "\x1b" not in ics
    _, event = parse_icalendar(ics)
    assert "Line one\nLine  two [31m" in event["DESCRIPTION"]
    assert event["ORGANIZER"].params["CN"] == "bookings@syncd.example"
    message = build_message(details, "REQUEST", from_address=FROM)
    assert "Line one\nLine  two [31m" in text_body(message)
    assert "Line one<br>\nLine  two [31m" in html_body(message)
