"""Booking invitations as RFC 6047 iMIP email: an RFC 5545/5546 calendar object plus bodies.

Pure: no I/O, no clock. Given the same details the same message comes out, byte for byte, so a
resend after a crash is an identical copy (same Message-ID, UID, SEQUENCE and MIME boundaries).
"""

from __future__ import annotations

import hashlib
import html
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import format_datetime
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from icalendar import Calendar, Event, vCalAddress

from syncd.errors import SyncdError
from syncd.identity import BOOKING_PROPERTY, booking_id_from_uid, booking_uid

Method = Literal["REQUEST", "CANCEL"]

PRODID = "-//syncd//syncd mentoring scheduler//EN"
ATTACHMENT_NAME = "invite.ics"
EN_DASH = "\u2013"  # between the start and end times in the bodies

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
# Characters that could end a header line or a calendar property, or that render as nothing.
_LINE_BREAKING_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})


class InviteError(SyncdError, ValueError):
    """The details cannot make a valid invitation (unknown zone, bad address, naive time...)."""


@dataclass(frozen=True, kw_only=True)
class InviteDetails:
    """Everything an invitation says. Instants are aware; they are sent in UTC."""

    booking_id: str
    sequence: int
    start: datetime
    end: datetime
    service_name: str
    mentor_name: str
    mentor_email: str
    student_name: str
    student_email: str
    student_timezone: str  # IANA name; the bodies show the time in this zone
    meeting_url: str | None = None
    description: str | None = None
    organizer_email: str
    organizer_name: str = "syncd"
    dtstamp: datetime  # when the message was generated; the caller passes "now"

    def __post_init__(self) -> None:
        _check_booking_id(self.booking_id)
        _check_sequence(self.sequence)
        for name in ("start", "end", "dtstamp"):
            _check_aware(name, getattr(self, name))
        if self.end <= self.start:
            raise InviteError(f"invite end {self.end} is not after its start {self.start}")
        for name in ("service_name", "mentor_name", "student_name"):
            _check_named(name, getattr(self, name))
        for name in ("mentor_email", "student_email", "organizer_email"):
            _check_email(name, getattr(self, name))
        student_zone(self)
        if self.meeting_url is not None:
            _check_meeting_url(self.meeting_url)


def build_calendar(details: InviteDetails, method: Method) -> str:
    """The iTIP calendar object (.ics text, CRLF line ends, folded at 75 octets)."""
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", _checked_method(method))
    calendar.add_component(_build_event(details, method))
    ics: bytes = calendar.to_ical()
    return ics.decode("utf-8")


def build_message(details: InviteDetails, method: Method, *, from_address: str) -> EmailMessage:
    """The iMIP email for the student: text, HTML and text/calendar alternatives + invite.ics."""
    ics = build_calendar(details, method)
    text, html_body = _text_body(details, method), _html_body(details, method)
    message = EmailMessage(policy=default_policy)
    message["Subject"] = subject(details, method)
    message["From"] = _address(details.organizer_name, from_address, "from_address")
    message["To"] = _address(details.student_name, details.student_email, "student_email")
    message["Date"] = format_datetime(details.dtstamp.astimezone(UTC))
    message["Message-ID"] = message_id(details, method, from_address=from_address)
    # Quoted-printable everywhere keeps the message 7-bit clean for relays without 8BITMIME.
    message.set_content(text, cte="quoted-printable")
    message.add_alternative(html_body, subtype="html", cte="quoted-printable")
    message.add_alternative(
        ics, subtype="calendar", params={"method": method}, cte="quoted-printable"
    )
    message.add_attachment(
        ics.encode("utf-8"), maintype="application", subtype="ics", filename=ATTACHMENT_NAME
    )
    _set_deterministic_boundaries(message, seed=ics + text + html_body)
    return message


def subject(details: InviteDetails, method: Method) -> str:
    if method == "CANCEL":
        prefix = "Cancelled"
    elif details.sequence > 0:
        prefix = "Updated invitation"
    else:
        prefix = "Invitation"
    service, mentor = one_line(details.service_name), one_line(details.mentor_name)
    return f"{prefix}: {service} with {mentor} on {format_local_start(details)}"


def message_id(details: InviteDetails, method: Method, *, from_address: str) -> str:
    """Stable per (booking, sequence, method): a resend carries the same id, so MUAs dedupe it."""
    domain = _parse_address(from_address, "from_address").domain
    if not domain.isascii():
        domain = "syncd.invalid"
    return f"<syncd-{details.booking_id}.{details.sequence}.{method.lower()}@{domain}>"


def one_line(text: str) -> str:
    """`text` made safe for one header or one-line field: no line breaks or controls, one space."""
    cleaned = "".join(
        " " if unicodedata.category(char) in _LINE_BREAKING_CATEGORIES else char for char in text
    )
    return " ".join(cleaned.split())


def multi_line(text: str) -> str:
    """`text` with its paragraphs kept but every other control character turned into a space."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(_strip_controls(line) for line in lines).strip()


def _strip_controls(line: str) -> str:
    return "".join(" " if unicodedata.category(char) == "Cc" else char for char in line).rstrip()


def student_zone(details: InviteDetails) -> ZoneInfo:
    try:
        return ZoneInfo(details.student_timezone)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise InviteError(f"unknown time zone {details.student_timezone!r}") from error


def format_local_range(details: InviteDetails) -> str:
    """E.g. 'Monday 8 March 2027, 09:00-10:00 (America/New_York)' (with an en dash)."""
    zone = student_zone(details)
    start, end = details.start.astimezone(zone), details.end.astimezone(zone)
    if start.date() == end.date():
        span = f"{_format_date(start)}, {start:%H:%M}{EN_DASH}{end:%H:%M}"
    else:
        span = f"{_format_date(start)}, {start:%H:%M} {EN_DASH} {_format_date(end)}, {end:%H:%M}"
    return f"{span} ({details.student_timezone})"


def format_local_start(details: InviteDetails) -> str:
    start = details.start.astimezone(student_zone(details))
    return f"{_format_date(start)}, {start:%H:%M} ({details.student_timezone})"


# --- validation -------------------------------------------------------------------------------


def _check_booking_id(booking_id: str) -> None:
    if booking_id_from_uid(booking_uid(booking_id)) != booking_id:
        raise InviteError(f"not a syncd booking id: {booking_id!r}")


def _check_sequence(sequence: int) -> None:
    if isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 0:
        raise InviteError(f"SEQUENCE must be a non-negative integer, not {sequence!r}")


def _check_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InviteError(f"{name} must be an aware datetime, got naive {value}")


def _check_named(name: str, value: str) -> None:
    if not one_line(value):
        raise InviteError(f"{name} is empty")


def _check_email(name: str, value: str) -> None:
    _parse_address(value, name)


def _parse_address(value: str, name: str) -> Address:
    if one_line(value) != value:
        raise InviteError(f"{name} contains whitespace or control characters")
    try:
        address = Address(addr_spec=value)
    except (ValueError, HeaderParseError) as error:
        raise InviteError(f"{name} is not an email address: {value!r}") from error
    if not (address.username and address.domain):
        raise InviteError(f"{name} is not an email address: {value!r}")
    return address


def _check_meeting_url(url: str) -> None:
    # Only web links: the URL lands in an HTML href and a URI property.
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or one_line(url) != url:
        raise InviteError(f"meeting_url must be an http(s) URL without spaces: {url!r}")
    if '"' in url or "<" in url or ">" in url:
        raise InviteError(f"meeting_url contains characters not allowed in a URL: {url!r}")


def _checked_method(method: str) -> str:
    if method not in ("REQUEST", "CANCEL"):
        raise InviteError(f"unsupported iTIP method {method!r}")
    return method


# --- calendar ---------------------------------------------------------------------------------


def _build_event(details: InviteDetails, method: Method) -> Event:
    event = Event()
    event.add("uid", booking_uid(details.booking_id))
    event.add("dtstamp", details.dtstamp.astimezone(UTC))
    event.add("dtstart", details.start.astimezone(UTC))
    event.add("dtend", details.end.astimezone(UTC))
    event.add("sequence", details.sequence)
    event.add("summary", _summary(details))
    event.add("description", _calendar_description(details))
    if details.meeting_url is not None:
        event.add("location", details.meeting_url)
        event.add("url", details.meeting_url)
    event.add("status", "CANCELLED" if method == "CANCEL" else "CONFIRMED")
    event.add("transp", "OPAQUE")
    event.add("organizer", _organizer(details))
    event.add("attendee", _student_attendee(details, method))
    event.add("attendee", _mentor_attendee(details))
    event.add(BOOKING_PROPERTY, details.booking_id)
    return event


def _summary(details: InviteDetails) -> str:
    return f"{one_line(details.service_name)} with {one_line(details.mentor_name)}"


def _calendar_description(details: InviteDetails) -> str:
    paragraphs = [_summary(details)]
    if details.description:
        paragraphs.append(multi_line(details.description))
    if details.meeting_url is not None:
        paragraphs.append(f"Join: {details.meeting_url}")
    return "\n\n".join(paragraphs)


def _cal_address(name: str, email: str) -> vCalAddress:
    address = vCalAddress(f"mailto:{email}")
    # A DQUOTE cannot appear in a quoted parameter value except via RFC 6868, which Outlook ignores.
    address.params["CN"] = (one_line(name) or email).replace('"', "'")
    return address


def _organizer(details: InviteDetails) -> vCalAddress:
    return _cal_address(details.organizer_name, details.organizer_email)


def _student_attendee(details: InviteDetails, method: Method) -> vCalAddress:
    attendee = _cal_address(details.student_name, details.student_email)
    attendee.params["CUTYPE"] = "INDIVIDUAL"
    attendee.params["ROLE"] = "REQ-PARTICIPANT"
    if method == "REQUEST":
        attendee.params["PARTSTAT"] = "NEEDS-ACTION"
        attendee.params["RSVP"] = "TRUE"
    return attendee


def _mentor_attendee(details: InviteDetails) -> vCalAddress:
    # The mentor hosts the session: already accepted, no reply expected.
    attendee = _cal_address(details.mentor_name, details.mentor_email)
    attendee.params["CUTYPE"] = "INDIVIDUAL"
    attendee.params["ROLE"] = "CHAIR"
    attendee.params["PARTSTAT"] = "ACCEPTED"
    attendee.params["RSVP"] = "FALSE"
    return attendee


# --- email ------------------------------------------------------------------------------------


def _address(display_name: str, email: str, name: str) -> Address:
    parsed = _parse_address(email, name)
    return Address(display_name=one_line(display_name), addr_spec=parsed.addr_spec)


def _headline(details: InviteDetails, method: Method) -> str:
    session = (
        f"Your session “{one_line(details.service_name)}” with {one_line(details.mentor_name)}"
    )
    if method == "CANCEL":
        return f"{session} has been cancelled."
    if details.sequence > 0:
        return f"{session} has been moved or updated."
    return f"{session} is booked."


def _text_body(details: InviteDetails, method: Method) -> str:
    lines = [
        f"Hello {one_line(details.student_name)},",
        "",
        _headline(details, method),
        "",
        f"When: {format_local_range(details)}",
        f"Mentor: {one_line(details.mentor_name)}",
    ]
    if details.meeting_url is not None and method == "REQUEST":
        lines.append(f"Join: {details.meeting_url}")
    if details.description:
        lines += ["", multi_line(details.description)]
    lines += ["", _closing(method)]
    return "\n".join(lines) + "\n"


def _html_body(details: InviteDetails, method: Method) -> str:
    rows = [
        f"<p>Hello {html.escape(one_line(details.student_name))},</p>",
        f"<p>{html.escape(_headline(details, method))}</p>",
        "<ul>",
        f"<li><strong>When:</strong> {html.escape(format_local_range(details))}</li>",
        f"<li><strong>Mentor:</strong> {html.escape(one_line(details.mentor_name))}</li>",
    ]
    if details.meeting_url is not None and method == "REQUEST":
        link = html.escape(details.meeting_url)
        rows.append(f'<li><strong>Join:</strong> <a href="{link}">{link}</a></li>')
    rows.append("</ul>")
    if details.description:
        paragraph = html.escape(multi_line(details.description)).replace("\n", "<br>\n")
        rows.append(f"<p>{paragraph}</p>")
    rows.append(f"<p>{html.escape(_closing(method))}</p>")
    return "<!DOCTYPE html>\n<html><body>\n" + "\n".join(rows) + "\n</body></html>\n"


def _closing(method: Method) -> str:
    if method == "CANCEL":
        return "Open the attached cancellation to remove the session from your calendar."
    return "The calendar invitation is attached; accept it to add the session to your calendar."


def _format_date(moment: datetime) -> str:
    return f"{_WEEKDAYS[moment.weekday()]} {moment.day} {_MONTHS[moment.month - 1]} {moment.year}"


def _set_deterministic_boundaries(message: EmailMessage, *, seed: str) -> None:
    # The email package draws random boundaries; deriving them from the content keeps a resend
    # byte-identical, and a boundary hashed from the content cannot occur in that content.
    digest = hashlib.sha256(seed.encode("utf-8")).hexdigest()[:32]
    for index, part in enumerate(message.walk()):
        if part.is_multipart():
            part.set_boundary(f"=_syncd_{index}_{digest}")
