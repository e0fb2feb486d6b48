"""The VCALENDAR/VEVENT written to a CalDAV calendar for a booking."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import icalendar

from connectors.base import EventSpec
from syncd.identity import BOOKING_PROPERTY

_PRODID = "-//syncd//syncd//EN"


def event_to_ical(event: EventSpec) -> str:
    """The VCALENDAR (one VEVENT, UTC times) that represents a booking in a calendar."""
    calendar = icalendar.Calendar()
    calendar.add("PRODID", _PRODID)
    calendar.add("VERSION", "2.0")
    calendar.add_component(_vevent(event))
    return str(calendar.to_ical().decode("utf-8"))


def _vevent(event: EventSpec) -> icalendar.Event:
    vevent = icalendar.Event()
    vevent.add("UID", event.uid)
    vevent.add("DTSTAMP", datetime.now(UTC))
    vevent.add("DTSTART", _utc(event.start))
    vevent.add("DTEND", _utc(event.end))
    vevent.add("SUMMARY", event.summary)
    for name, value in (("DESCRIPTION", event.description), ("LOCATION", event.location)):
        if value:
            vevent.add(name, value)
    if event.organizer_email:
        vevent.add("ORGANIZER", _address(event.organizer_email, event.organizer_name, {}))
    for name, email in event.attendees:
        params = {"ROLE": "REQ-PARTICIPANT", "PARTSTAT": "NEEDS-ACTION", "RSVP": "TRUE"}
        vevent.add("ATTENDEE", _address(email, name, params))
    vevent.add("SEQUENCE", event.sequence)
    vevent.add("STATUS", event.status)
    booking_id = event.private.get("syncd-booking-id")
    if booking_id:
        vevent.add(BOOKING_PROPERTY, booking_id)
    return vevent


def _address(email: str, name: str | None, params: Mapping[str, str]) -> icalendar.vCalAddress:
    address = icalendar.vCalAddress(f"mailto:{email}")
    if name:
        address.params["CN"] = name
    for key, value in params.items():
        address.params[key] = value
    return address


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r} in an EventSpec")
    return value.astimezone(UTC)
