"""Time at the edges: validating zone names and instants, local dates to UTC ranges."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from syncd.errors import UserError


def zone(name: str) -> ZoneInfo:
    """The IANA zone, or a clear error for an unknown name."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise UserError(
            f"unknown timezone {name!r} (use an IANA name like Europe/Madrid)"
        ) from None


def parse_instant(text: str) -> datetime:
    """An ISO-8601 instant that carries an offset or Z; returned in UTC."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UserError(
            f"invalid date-time {text!r}: expected ISO-8601 like 2027-03-08T09:00-05:00"
        ) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise UserError(f"date-time {text!r} has no offset: add one (e.g. -05:00) or Z for UTC")
    return parsed.astimezone(UTC)


def parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise UserError(f"invalid date {text!r}: expected YYYY-MM-DD") from None


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The first instant of a local date (midnight may not exist on DST days)."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def local_dates_range(first: date, days: int, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) in UTC covering `days` local dates from `first`."""
    return local_midnight(first, tz), local_midnight(first + timedelta(days=days), tz)


def utc_now() -> datetime:
    return datetime.now(UTC)
