"""Pure translation of one Google Calendar event (API v3 JSON) into a busy occurrence. No I/O.

The same rules as `syncd.busy` (DESIGN.md §3), in Google's vocabulary:

- `status: cancelled`, `transparency: transparent` and the mentor's own attendee entry with
  `responseStatus: declined` (the attendee marked `self: true`, or one of the mentor's
  addresses) block nothing.
- `eventType`: `workingLocation` only says where the mentor works, so it blocks nothing;
  `focusTime` and `outOfOffice` block; other types follow the rules above.
- All-day `start.date` / `end.date` are midnight in the calendar's zone, not UTC; `dateTime`
  carries its offset. A zero-length event blocks nothing.
- syncd's own booking events (the private extended property, or an id / iCalUID that is a
  booking id) come back with `booking_id` set so the caller does not count a booking twice.
Recurring events are expected as instances (`singleEvents=true`), so no expansion here.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from syncd.busy import BusyOccurrence, MalformedCalendarData
from syncd.identity import GOOGLE_PRIVATE_KEY, booking_id_from_uid

_BOOKING_ID = re.compile(r"^[0-9a-f]{32}$")
_NEVER_BUSY_TYPES = frozenset({"workingLocation"})


class MalformedGoogleEvent(MalformedCalendarData):
    """A Google event lacks what is needed to place it on the timeline."""


def busy_from_google_event(
    event: Mapping[str, Any],
    *,
    calendar_timezone: str,
    mentor_emails: Collection[str] = (),
) -> BusyOccurrence | None:
    """The time `event` blocks, or None when it blocks nothing."""
    event_id = event.get("id")
    if not isinstance(event_id, str) or not event_id:
        raise MalformedGoogleEvent(f"Google event without an id: {_excerpt(event)}")
    if not _blocks(event, {email.strip().lower() for email in mentor_emails}):
        return None
    zone = _zone(calendar_timezone)
    start = _instant(event, "start", zone)
    end = _instant(event, "end", zone)
    if end < start:
        raise MalformedGoogleEvent(f"Google event {event_id} ends before it starts")
    if end == start:
        return None
    return BusyOccurrence(
        start=start,
        end=end,
        uid=str(event.get("iCalUID") or event_id),
        recurrence_id=_recurrence_id(event, zone),
        booking_id=_booking_id(event),
    )


def _blocks(event: Mapping[str, Any], mentor_emails: set[str]) -> bool:
    if event.get("status") == "cancelled" or event.get("transparency") == "transparent":
        return False
    if event.get("eventType") in _NEVER_BUSY_TYPES:
        return False
    return not _declined_by_mentor(event, mentor_emails)


def _declined_by_mentor(event: Mapping[str, Any], mentor_emails: set[str]) -> bool:
    for attendee in event.get("attendees") or ():
        is_mentor = attendee.get("self") is True or (
            str(attendee.get("email", "")).strip().lower() in mentor_emails
        )
        if is_mentor and attendee.get("responseStatus") == "declined":
            return True
    return False


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown calendar time zone {name!r}") from exc


def _instant(event: Mapping[str, Any], key: str, zone: ZoneInfo) -> datetime:
    when = event.get(key)
    if not isinstance(when, Mapping):
        raise MalformedGoogleEvent(f"Google event {event.get('id')} has no {key}")
    try:
        return _when_to_utc(when, zone)
    except (TypeError, ValueError) as exc:
        raise MalformedGoogleEvent(
            f"Google event {event.get('id')} has an unreadable {key}: {dict(when)!r}"
        ) from exc


def _when_to_utc(when: Mapping[str, Any], zone: ZoneInfo) -> datetime:
    """An EventDateTime as UTC: dateTime with its offset, or a date at midnight in `zone`."""
    if "dateTime" in when:
        moment = datetime.fromisoformat(str(when["dateTime"]).replace("Z", "+00:00"))
        if moment.tzinfo is None:
            # Google always sends an offset; if not, the event's own zone, else the calendar's.
            moment = moment.replace(tzinfo=_zone(when["timeZone"]) if "timeZone" in when else zone)
        return moment.astimezone(UTC)
    if "date" in when:
        day = date.fromisoformat(str(when["date"]))
        return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)
    raise ValueError("neither dateTime nor date")


def _recurrence_id(event: Mapping[str, Any], zone: ZoneInfo) -> str | None:
    """Like syncd.busy: the instance's original start as a UTC ISO timestamp, or an ISO date."""
    original = event.get("originalStartTime")
    if not isinstance(original, Mapping):
        return None
    try:
        if "date" in original and "dateTime" not in original:
            return date.fromisoformat(str(original["date"])).isoformat()
        return _when_to_utc(original, zone).isoformat()
    except (TypeError, ValueError) as exc:
        raise MalformedGoogleEvent(
            f"Google event {event.get('id')} has an unreadable originalStartTime"
        ) from exc


def _booking_id(event: Mapping[str, Any]) -> str | None:
    private = (event.get("extendedProperties") or {}).get("private") or {}
    candidate = private.get(GOOGLE_PRIVATE_KEY)
    if isinstance(candidate, str) and _BOOKING_ID.match(candidate):
        return candidate
    if _BOOKING_ID.match(str(event.get("id", ""))):
        return str(event["id"])
    return booking_id_from_uid(str(event.get("iCalUID", "")))


def _excerpt(event: Mapping[str, Any]) -> str:
    text = repr(dict(event))
    return text if len(text) <= 200 else text[:197] + "..."
