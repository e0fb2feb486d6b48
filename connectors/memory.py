"""An in-memory calendar provider: the fake for engine tests and the contract suite's reference.

It behaves like a CalDAV server with sync-collection: objects are iCalendar texts under refs,
every change bumps one account-wide counter, and a pull state is ``<epoch>:<counter>``.
`expire_states()` makes every state issued so far stale (as a server does when it prunes its
change log); garbage states are always stale. `fail_next()` makes the next call raise, so
engine tests can exercise error handling.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from connectors.base import (
    BusyPeriod,
    CalendarInfo,
    Changes,
    Connector,
    ConnectorError,
    EventRef,
    EventSpec,
    NotFound,
    PreconditionFailed,
    RemoteObject,
    StaleSyncState,
)
from connectors.caldav import busy_periods_from_objects, event_to_ical

log = logging.getLogger(__name__)


@dataclass
class _StoredObject:
    ics: str
    etag: str


@dataclass
class _MemoryCalendar:
    info: CalendarInfo
    objects: dict[str, _StoredObject] = field(default_factory=dict)
    changes: list[tuple[int, str]] = field(default_factory=list)  # (counter, ref), in order


class MemoryConnector(Connector):
    provider = "memory"

    def __init__(self, *, default_timezone: str = "UTC", mentor_emails: Sequence[str] = ()) -> None:
        self._calendars: dict[str, _MemoryCalendar] = {}
        self._counter = itertools.count(1)
        self._latest = 0
        self._epoch = 1
        self._pending_failure: ConnectorError | None = None
        self._default_timezone = default_timezone
        self._mentor_emails = tuple(mentor_emails)
        self.calls: list[str] = []  # method names, in order: lets tests count round trips

    # ------------------------------------------------------------- test helpers

    def add_calendar(
        self, remote_id: str, name: str | None = None, timezone: str | None = None
    ) -> CalendarInfo:
        info = CalendarInfo(remote_id=remote_id, name=name or remote_id, timezone=timezone)
        self._calendars[remote_id] = _MemoryCalendar(info)
        return info

    def store(self, calendar: str, ref: str, ics: str) -> str:
        """Create or replace an object as if another client wrote it; returns its etag."""
        return self._write(self._calendar(calendar), ref, ics)

    def remove(self, calendar: str, ref: str) -> None:
        """Delete an object as if another client did; missing objects raise NotFound."""
        cal = self._calendar(calendar)
        if ref not in cal.objects:
            raise NotFound(f"{calendar}: no object {ref}")
        del cal.objects[ref]
        cal.changes.append((self._bump(), ref))

    def objects(self, calendar: str) -> dict[str, str]:
        """ref -> iCalendar text of every object in the calendar."""
        return {ref: obj.ics for ref, obj in self._calendar(calendar).objects.items()}

    def expire_states(self) -> None:
        """Every state issued until now becomes stale, as when a server prunes its log."""
        self._epoch += 1

    def fail_next(self, error: ConnectorError) -> None:
        """The next connector call raises `error` (once)."""
        self._pending_failure = error

    # ---------------------------------------------------------------- interface

    def list_calendars(self) -> list[CalendarInfo]:
        self._enter("list_calendars")
        return [cal.info for cal in self._calendars.values()]

    def pull(self, calendar: str, state: str | None) -> Changes:
        self._enter("pull")
        cal = self._calendar(calendar)
        new_state = f"{self._epoch}:{self._latest}"
        if state is None:
            upserts = [self._remote(ref, obj) for ref, obj in cal.objects.items()]
            return Changes(upserts, (), new_state, full=True, calendar_timezone=cal.info.timezone)
        since = self._parse_state(state)
        touched = dict.fromkeys(ref for counter, ref in cal.changes if counter > since)
        upserts = [self._remote(ref, cal.objects[ref]) for ref in touched if ref in cal.objects]
        deleted = [ref for ref in touched if ref not in cal.objects]
        return Changes(upserts, deleted, new_state)

    def busy(self, calendars: Sequence[str], start: datetime, end: datetime) -> list[BusyPeriod]:
        self._enter("busy")
        periods: list[BusyPeriod] = []
        for calendar in calendars:
            cal = self._calendar(calendar)
            periods += busy_periods_from_objects(
                self._all_remote(cal),
                start=start,
                end=end,
                default_timezone=cal.info.timezone or self._default_timezone,
                mentor_emails=self._mentor_emails,
            )
        return sorted(periods, key=lambda period: (period.start, period.end))

    def put_event(self, calendar: str, event: EventSpec, ref: EventRef | None = None) -> EventRef:
        self._enter("put_event")
        cal = self._calendar(calendar)
        if ref is None:
            target = f"{event.event_key}.ics"
            if target in cal.objects:  # an earlier attempt already created it
                return EventRef(target, cal.objects[target].etag)
        else:
            target = ref.ref
            current = cal.objects.get(target)
            if ref.etag is not None and (current is None or current.etag != ref.etag):
                raise PreconditionFailed(f"{calendar}/{target}: etag {ref.etag} is outdated")
        etag = self._write(cal, target, event_to_ical(event))
        return EventRef(target, etag)

    def delete_event(self, calendar: str, ref: EventRef) -> None:
        self._enter("delete_event")
        cal = self._calendar(calendar)
        if ref.ref in cal.objects:
            del cal.objects[ref.ref]
            cal.changes.append((self._bump(), ref.ref))

    # ------------------------------------------------------------------ helpers

    def _enter(self, method: str) -> None:
        self.calls.append(method)
        failure, self._pending_failure = self._pending_failure, None
        if failure is not None:
            raise failure

    def _calendar(self, calendar: str) -> _MemoryCalendar:
        try:
            return self._calendars[calendar]
        except KeyError:
            raise NotFound(f"no calendar {calendar}") from None

    def _bump(self) -> int:
        self._latest = next(self._counter)
        return self._latest

    def _write(self, cal: _MemoryCalendar, ref: str, ics: str) -> str:
        counter = self._bump()
        etag = f'"{counter}"'
        cal.objects[ref] = _StoredObject(ics, etag)
        cal.changes.append((counter, ref))
        return etag

    def _parse_state(self, state: str) -> int:
        epoch, _, counter = state.partition(":")
        if epoch != str(self._epoch) or not counter.isdigit():
            raise StaleSyncState(f"unknown sync state {state!r}")
        since = int(counter)
        if since > self._latest:
            raise StaleSyncState(f"sync state {state!r} is from the future")
        return since

    @staticmethod
    def _remote(ref: str, obj: _StoredObject) -> RemoteObject:
        return RemoteObject(ref=ref, etag=obj.etag, kind="ical", data=obj.ics)

    def _all_remote(self, cal: _MemoryCalendar) -> Iterable[RemoteObject]:
        return [self._remote(ref, obj) for ref, obj in cal.objects.items()]
