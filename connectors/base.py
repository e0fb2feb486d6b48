"""The one interface every calendar provider implements, its value types and its error family.

Times crossing this interface are aware datetimes; raw calendar data travels as iCalendar text
(CalDAV natively; the Google connector returns its events as JSON dicts in `RemoteObject.data`).
Turning provider data into busy intervals is not a connector's job: see `syncd.busy`.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class ConnectorError(Exception):
    """Base of every error a connector raises."""


class AuthError(ConnectorError):
    """The provider rejected our credentials (wrong password, revoked or expired grant)."""


class NotFound(ConnectorError):
    """The calendar or object does not exist (any more)."""


class PreconditionFailed(ConnectorError):
    """An etag / If-Match / If-None-Match condition failed: somebody else changed the object."""


class TransientError(ConnectorError):
    """Timeout, connection failure, 5xx, rate limit: retry later with backoff."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ProtocolError(ConnectorError):
    """The server answered something we cannot use (malformed XML/JSON/iCalendar, odd status)."""


class StaleSyncState(ConnectorError):
    """The provider no longer accepts our sync token; the caller must do a full resync."""


@dataclass(frozen=True)
class CalendarInfo:
    """One calendar a connector can see."""

    remote_id: str  # CalDAV: the collection URL; Google: the calendar id
    name: str
    timezone: str | None = None  # IANA name if the provider declares one
    read_only: bool = False
    primary: bool = False


@dataclass(frozen=True)
class RemoteObject:
    """One calendar object as the provider holds it.

    `kind` is "ical" (data is iCalendar text, str) or "google" (data is the event JSON, dict).
    """

    ref: str  # CalDAV: object href; Google: event id
    etag: str | None
    kind: str
    data: Any


@dataclass(frozen=True)
class Changes:
    """The result of one incremental pull."""

    upserts: Sequence[RemoteObject]
    deleted: Sequence[str]  # refs
    state: str | None  # opaque sync state to pass to the next pull
    full: bool = False  # True when this pull is a full listing: refs not listed are gone
    calendar_timezone: str | None = None


@dataclass(frozen=True)
class BusyPeriod:
    start: datetime
    end: datetime


@dataclass(frozen=True)
class EventSpec:
    """A booking to write into a mentor's destination calendar.

    `event_key` is deterministic per booking (derived from the booking id), so writing the
    same booking twice can be recognised as the same event by every provider.
    """

    event_key: str
    uid: str
    summary: str
    start: datetime
    end: datetime
    sequence: int = 0
    description: str = ""
    location: str = ""
    organizer_email: str | None = None
    organizer_name: str | None = None
    attendees: Sequence[tuple[str, str]] = ()  # (name, email)
    status: str = "CONFIRMED"  # or "CANCELLED"
    private: Mapping[str, str] = field(default_factory=dict)  # e.g. {"syncd-booking-id": "..."}


@dataclass(frozen=True)
class EventRef:
    """Where a written event lives, so it can be updated or deleted later."""

    ref: str
    etag: str | None = None


class Connector(abc.ABC):
    """A connection to one provider account.

    Reads are required; writes are optional and raise NotImplementedError where a provider or
    account cannot write (capability flag `can_write`).
    """

    provider: str = "abstract"
    can_write: bool = True

    @abc.abstractmethod
    def list_calendars(self) -> list[CalendarInfo]:
        """Every calendar of the account."""

    @abc.abstractmethod
    def pull(self, calendar: str, state: str | None) -> Changes:
        """Changes since `state` (None: everything). Raises StaleSyncState when the provider
        rejects the state; the caller then calls again with None."""

    @abc.abstractmethod
    def busy(self, calendars: Sequence[str], start: datetime, end: datetime) -> list[BusyPeriod]:
        """Live busy periods of the calendars within [start, end)."""

    def put_event(self, calendar: str, event: EventSpec, ref: EventRef | None = None) -> EventRef:
        """Create (ref None) or update the booking event; idempotent for the same event_key."""
        raise NotImplementedError

    def delete_event(self, calendar: str, ref: EventRef) -> None:
        """Delete the event; deleting an event that is already gone is not an error."""
        raise NotImplementedError

    def close(self) -> None:  # noqa: B027 - an optional hook: most connectors hold nothing
        """Release network resources."""
