"""Pure translation of iCalendar data into busy occurrences (DESIGN.md §3). No I/O.

Rules, in one place so every connector and the sync engine apply the same ones:

- An occurrence blocks time unless it is transparent (TRANSP:TRANSPARENT), cancelled
  (STATUS:CANCELLED) or declined by the mentor (an ATTENDEE whose address is one of the
  mentor's, with PARTSTAT=DECLINED). Each rule is applied per occurrence, so a single
  overridden instance (RECURRENCE-ID) can be cancelled, made transparent or declined alone.
- Recurrences (RRULE, RDATE, EXDATE, RECURRENCE-ID overrides) are expanded with
  recurring-ical-events, bounded to the requested window.
- All-day dates and floating times are wall time in `default_timezone` (the calendar's zone,
  else the mentor's). A TZID that is neither IANA nor defined by a VTIMEZONE in the data is
  read the same way, with a warning.
- Without DTEND, DURATION is used, else RFC 5545 §3.6.1 defaults: a date lasts one day, a
  date-time lasts zero seconds. A zero-length occurrence blocks nothing and is not returned,
  because an interval [t, t) overlaps no slot.
- Only VEVENTs count: VTODO and VJOURNAL never block.
- syncd's own booking events (UID minted by syncd.identity, or X-SYNCD-BOOKING-ID) are
  returned with `booking_id` set so the caller does not count a booking twice.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import icalendar
import recurring_ical_events

from syncd.identity import BOOKING_PROPERTY, booking_id_from_uid

log = logging.getLogger(__name__)

# Floating and date values are only placed on the timeline after expansion, so the query
# window is widened by more than the largest UTC offset (±14 h) and filtered exactly later.
_EXPANSION_MARGIN = timedelta(days=2)
_DATE_TIME_PROPERTIES = ("DTSTART", "DTEND", "RECURRENCE-ID", "EXDATE", "RDATE")


class MalformedCalendarData(ValueError):
    """The iCalendar data cannot be parsed or expanded."""


@dataclass(frozen=True)
class BusyOccurrence:
    """One blocking occurrence; start and end are aware UTC datetimes, start < end."""

    start: datetime
    end: datetime
    uid: str
    recurrence_id: str | None  # UTC ISO timestamp (or ISO date) of the instance, if recurring
    booking_id: str | None  # set when the event is one of syncd's own bookings


def busy_from_ical(
    ics: str | icalendar.Calendar,
    *,
    window_start: datetime,
    window_end: datetime,
    default_timezone: str,
    mentor_emails: Collection[str] = (),
) -> list[BusyOccurrence]:
    """Blocking occurrences of the VEVENTs in `ics` that overlap [window_start, window_end)."""
    _require_aware(window_start, "window_start")
    _require_aware(window_end, "window_end")
    zone = _zone(default_timezone)
    calendar = parse_calendar(ics) if isinstance(ics, str) else ics
    _warn_about_unknown_tzids(calendar, default_timezone)
    recurring_uids = _recurring_uids(calendar)
    mentors = {_normalise_address(email) for email in mentor_emails}
    result: list[BusyOccurrence] = []
    for component in _expand(calendar, window_start, window_end):
        occurrence = _to_occurrence(component, zone, recurring_uids, mentors)
        if occurrence is not None and _overlaps(occurrence, window_start, window_end):
            result.append(occurrence)
    result.sort(key=lambda item: (item.start, item.end, item.uid))
    return result


def parse_calendar(ics: str) -> icalendar.Calendar:
    """Parse one VCALENDAR, raising MalformedCalendarData with the parser's reason."""
    try:
        calendar = icalendar.Calendar.from_ical(ics)
    except ValueError as exc:
        raise MalformedCalendarData(f"unparseable iCalendar data: {exc}") from exc
    if not isinstance(calendar, icalendar.Calendar):
        raise MalformedCalendarData("iCalendar data does not start with a VCALENDAR")
    for event in calendar.walk("VEVENT"):
        broken = [name for name, _ in event.errors if name in _DATE_TIME_PROPERTIES]
        if broken:
            raise MalformedCalendarData(
                f"event {event.get('UID', '?')!s} has invalid {', '.join(broken)}"
            )
        if "DTSTART" not in event:
            raise MalformedCalendarData(f"event {event.get('UID', '?')!s} has no DTSTART")
    return calendar


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got {value!r}")


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone {name!r}") from exc


def _expand(
    calendar: icalendar.Calendar, window_start: datetime, window_end: datetime
) -> Iterable[icalendar.Event]:
    query = recurring_ical_events.of(calendar, components=["VEVENT"])
    try:
        return list(query.between(window_start - _EXPANSION_MARGIN, window_end + _EXPANSION_MARGIN))
    except Exception as exc:  # the library raises many types for bad recurrence data
        raise MalformedCalendarData(f"cannot expand recurrences: {exc}") from exc


def _recurring_uids(calendar: icalendar.Calendar) -> set[str]:
    """UIDs whose occurrences deserve a recurrence id (recurring masters or overrides)."""
    return {
        str(event.get("UID", ""))
        for event in calendar.walk("VEVENT")
        if "RRULE" in event or "RDATE" in event or "RECURRENCE-ID" in event
    }


def _to_occurrence(
    component: icalendar.Event,
    zone: ZoneInfo,
    recurring_uids: set[str],
    mentors: set[str],
) -> BusyOccurrence | None:
    if not _blocks(component, mentors):
        return None
    start = to_utc(_temporal(component, "DTSTART"), zone)
    end = to_utc(_temporal(component, "DTEND"), zone) if "DTEND" in component else start
    if end <= start:
        return None
    uid = str(component.get("UID", ""))
    return BusyOccurrence(
        start=start,
        end=end,
        uid=uid,
        recurrence_id=_recurrence_id(component, zone) if uid in recurring_uids else None,
        booking_id=_booking_id(component, uid),
    )


def _blocks(component: icalendar.Event, mentors: set[str]) -> bool:
    if str(component.get("TRANSP", "OPAQUE")).upper() == "TRANSPARENT":
        return False
    if str(component.get("STATUS", "")).upper() == "CANCELLED":
        return False
    return not _declined_by_mentor(component, mentors)


def _declined_by_mentor(component: icalendar.Event, mentors: set[str]) -> bool:
    if not mentors:
        return False
    for attendee in _as_list(component.get("ATTENDEE")):
        partstat = str(attendee.params.get("PARTSTAT", "")).upper()
        if partstat == "DECLINED" and _normalise_address(str(attendee)) in mentors:
            return True
    return False


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _normalise_address(address: str) -> str:
    address = address.strip()
    if address.lower().startswith("mailto:"):
        address = address[len("mailto:") :]
    return address.lower()


def to_utc(value: date | datetime, zone: ZoneInfo) -> datetime:
    """A date (its midnight) or a floating time read in `zone`; aware values converted."""
    if not isinstance(value, datetime):
        value = datetime.combine(value, time.min)
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(UTC)


def _recurrence_id(component: icalendar.Event, zone: ZoneInfo) -> str | None:
    if "RECURRENCE-ID" not in component:
        return None
    value = _temporal(component, "RECURRENCE-ID")
    if isinstance(value, datetime):
        return to_utc(value, zone).isoformat()
    return str(value.isoformat())


def _temporal(component: icalendar.Event, name: str) -> date | datetime:
    prop: Any = component[name]
    value = prop.dt
    if not isinstance(value, date):  # a period or duration where a point in time belongs
        raise MalformedCalendarData(f"event {component.get('UID', '?')!s}: {name} is not a time")
    return value


def _booking_id(component: icalendar.Event, uid: str) -> str | None:
    from_uid = booking_id_from_uid(uid)
    if from_uid is not None:
        return from_uid
    private = component.get(BOOKING_PROPERTY)
    return str(private) if private else None


def _overlaps(occurrence: BusyOccurrence, window_start: datetime, window_end: datetime) -> bool:
    return occurrence.start < window_end and occurrence.end > window_start


def _warn_about_unknown_tzids(calendar: icalendar.Calendar, default_timezone: str) -> None:
    """icalendar leaves a value naive when its TZID is neither IANA nor a VTIMEZONE here."""
    for event in calendar.walk("VEVENT"):
        for name in ("DTSTART", "DTEND", "RECURRENCE-ID"):
            prop: Any = event.get(name)
            if prop is None or "TZID" not in prop.params:
                continue
            value = prop.dt
            if isinstance(value, datetime) and value.tzinfo is None:
                log.warning(
                    "event %s: unknown TZID %r on %s, reading it in %s",
                    event.get("UID", "?"),
                    prop.params["TZID"],
                    name,
                    default_timezone,
                )


# -- a cheap look before parsing -----------------------------------------------------------------

# Wider than any zone offset, so a floating, all-day or zoned date read in any zone stays on
# the same side of the window.
_PREFILTER_MARGIN = timedelta(days=2)
_UNFOLD = re.compile(r"\r?\n[ \t]")
_DATE_PROPERTY = re.compile(r"^(DTSTART|DTEND)(?:;[^:\r\n]*)?:(\d{8})", re.MULTILINE)
_RECURRENCE_WORDS = ("RRULE", "RDATE", "EXDATE", "RECURRENCE-ID")


def position_outside(ics: str, window_start: datetime, window_end: datetime) -> str | None:
    """ "before" or "after" when `ics` is one plain, non-recurring event that certainly lies
    entirely outside [window_start, window_end); None whenever that is not certain, and the
    caller must parse. Most of a calendar's history and far future is skipped this way
    without the cost of a full iCalendar parse."""
    text = _UNFOLD.sub("", ics)
    if text.count("BEGIN:VEVENT") != 1:
        return None
    event = text[text.index("BEGIN:VEVENT") : text.find("END:VEVENT")]
    # Only the event's own recurrence matters (a VTIMEZONE has RRULEs of its own).
    if any(word in event for word in _RECURRENCE_WORDS):
        return None
    days = {name: _compact_date(value) for name, value in _DATE_PROPERTY.findall(event)}
    start, end = days.get("DTSTART"), days.get("DTEND")
    if start is None:
        return None
    if start > (window_end + _PREFILTER_MARGIN).date():
        return "after"
    if end is not None and end < (window_start - _PREFILTER_MARGIN).date():
        return "before"
    return None


def _compact_date(value: str) -> date | None:
    try:
        return date(int(value[:4]), int(value[4:6]), int(value[6:8]))
    except ValueError:
        return None
