"""Busy rules for Google events, on hand-written event dicts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from syncd.busy import MalformedCalendarData
from syncd.busy_google import MalformedGoogleEvent, busy_from_google_event
from syncd.identity import GOOGLE_PRIVATE_KEY

BERLIN = "Europe/Berlin"
BOOKING = "0123456789abcdef0123456789abcdef"


def timed(**extra: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": "evt00001",
        "iCalUID": "evt00001@google.com",
        "status": "confirmed",
        "start": {"dateTime": "2025-03-10T09:00:00+01:00", "timeZone": BERLIN},
        "end": {"dateTime": "2025-03-10T10:30:00+01:00", "timeZone": BERLIN},
    }
    event.update(extra)
    return event


def busy(event: dict[str, Any], **kwargs: Any) -> Any:
    return busy_from_google_event(event, calendar_timezone=BERLIN, **kwargs)


def test_a_plain_timed_event_blocks_its_utc_interval() -> None:
    occurrence = busy(timed())
    assert occurrence is not None
    assert occurrence.start == datetime(2025, 3, 10, 8, 0, tzinfo=UTC)
    assert occurrence.end == datetime(2025, 3, 10, 9, 30, tzinfo=UTC)
    assert occurrence.uid == "evt00001@google.com"
    assert occurrence.recurrence_id is None
    assert occurrence.booking_id is None


def test_z_suffix_is_utc() -> None:
    event = timed(
        start={"dateTime": "2025-03-10T08:00:00Z"}, end={"dateTime": "2025-03-10T09:00:00Z"}
    )
    occurrence = busy(event)
    assert occurrence is not None
    assert occurrence.start == datetime(2025, 3, 10, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "extra",
    [
        {"transparency": "transparent"},
        {"status": "cancelled"},
        {"eventType": "workingLocation"},
    ],
)
def test_events_that_block_nothing(extra: dict[str, Any]) -> None:
    assert busy(timed(**extra)) is None


@pytest.mark.parametrize("event_type", ["focusTime", "outOfOffice", "default"])
def test_event_types_that_block(event_type: str) -> None:
    assert busy(timed(eventType=event_type)) is not None


def test_opaque_transparency_blocks() -> None:
    assert busy(timed(transparency="opaque")) is not None


def test_declined_by_self_attendee_does_not_block() -> None:
    attendees = [
        {"email": "mentor@example.com", "self": True, "responseStatus": "declined"},
        {"email": "other@example.com", "responseStatus": "accepted"},
    ]
    assert busy(timed(attendees=attendees)) is None


def test_declined_by_mentor_address_does_not_block() -> None:
    attendees = [{"email": "Mentor@Example.com", "responseStatus": "declined"}]
    assert busy(timed(attendees=attendees), mentor_emails=["mentor@example.com"]) is None


def test_declined_by_someone_else_still_blocks() -> None:
    attendees = [
        {"email": "mentor@example.com", "self": True, "responseStatus": "accepted"},
        {"email": "student@example.com", "responseStatus": "declined"},
    ]
    assert busy(timed(attendees=attendees), mentor_emails=["mentor@example.com"]) is not None


def test_all_day_event_is_midnight_in_the_calendar_zone() -> None:
    event = timed(start={"date": "2025-07-01"}, end={"date": "2025-07-02"})
    occurrence = busy(event)
    assert occurrence is not None
    # Berlin is UTC+2 in July: local midnight is 22:00 UTC the day before.
    assert occurrence.start == datetime(2025, 6, 30, 22, 0, tzinfo=UTC)
    assert occurrence.end == datetime(2025, 7, 1, 22, 0, tzinfo=UTC)


def test_all_day_event_in_another_calendar_zone() -> None:
    event = timed(start={"date": "2025-01-15"}, end={"date": "2025-01-16"})
    occurrence = busy_from_google_event(event, calendar_timezone="America/New_York")
    assert occurrence is not None
    assert occurrence.start == datetime(2025, 1, 15, 5, 0, tzinfo=UTC)


def test_instance_of_recurring_event_has_recurrence_id() -> None:
    event = timed(
        id="abc123_20250310T080000Z",
        recurringEventId="abc123",
        originalStartTime={"dateTime": "2025-03-10T09:00:00+01:00"},
    )
    occurrence = busy(event)
    assert occurrence is not None
    assert occurrence.recurrence_id == "2025-03-10T08:00:00+00:00"


def test_all_day_instance_recurrence_id_is_a_date() -> None:
    event = timed(
        start={"date": "2025-03-10"},
        end={"date": "2025-03-11"},
        originalStartTime={"date": "2025-03-10"},
    )
    occurrence = busy(event)
    assert occurrence is not None
    assert occurrence.recurrence_id == "2025-03-10"


def test_own_booking_recognised_by_private_property() -> None:
    event = timed(extendedProperties={"private": {GOOGLE_PRIVATE_KEY: BOOKING}})
    occurrence = busy(event)
    assert occurrence is not None
    assert occurrence.booking_id == BOOKING


def test_own_booking_recognised_by_event_id() -> None:
    occurrence = busy(timed(id=BOOKING))
    assert occurrence is not None
    assert occurrence.booking_id == BOOKING


def test_private_property_that_is_not_a_booking_id_is_ignored() -> None:
    event = timed(extendedProperties={"private": {GOOGLE_PRIVATE_KEY: "not-a-booking"}})
    occurrence = busy(event)
    assert occurrence is not None
    assert occurrence.booking_id is None


def test_zero_length_event_blocks_nothing() -> None:
    same = {"dateTime": "2025-03-10T09:00:00+01:00"}
    assert busy(timed(start=same, end=same)) is None


@pytest.mark.parametrize(
    "event",
    [
        {
            "start": {"dateTime": "2025-03-10T09:00:00Z"},
            "end": {"dateTime": "2025-03-10T10:00:00Z"},
        },
        timed(start=None),
        timed(end={"dateTime": "yesterday"}),
        timed(end={"timeZone": BERLIN}),
        timed(end={"dateTime": "2025-03-10T07:00:00+01:00"}),
    ],
    ids=["no-id", "no-start", "bad-datetime", "neither-date-nor-datetime", "ends-before-start"],
)
def test_malformed_events_raise_a_value_error(event: dict[str, Any]) -> None:
    with pytest.raises(MalformedGoogleEvent) as caught:
        busy(event)
    assert isinstance(caught.value, MalformedCalendarData)
    assert isinstance(caught.value, ValueError)
    assert "Google event" in str(caught.value)


def test_unknown_calendar_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="Mars/Olympus"):
        busy_from_google_event(timed(), calendar_timezone="Mars/Olympus")
