"""The sync engine: pull each connected calendar's changes into the busy cache (DESIGN.md §3).

One pull of one calendar:
1. `connector.pull(remote_id, stored state)`; a stale state (StaleSyncState) is answered with
   a full pull, and a full pull replaces everything stored for the calendar, so a resync can
   never leave duplicates.
2. Each changed object is stored raw (CalendarObject) and translated into busy rows with the
   pure rules of `syncd.busy` / `syncd.busy_google`, one row per occurrence inside the rolling
   window; its old rows are replaced. Deleted objects lose their rows. A malformed object is
   logged with its ref, keeps its error on CalendarObject.error, gets no rows, and the rest
   of the pull goes on.
3. The window is [now - 1 day, now + the longest service horizon + 1 day], widened to whole
   UTC days so it moves once a day, not at every pull. When its end has moved since the last
   pull, stored objects that reach beyond the old end (recurring masters, events further out)
   are expanded again from the database, without asking the server.

Rows of syncd's own booking events carry `booking_id`, so slot queries skip them (the booking
itself counts). Faults are sorted for the daemon: AuthError marks the calendar and its account
`needs_reconnect` (not pulled again until the mentor reconnects); other connector errors are
released with backoff through `syncd.store.leases.release_calendar`.
"""

from __future__ import annotations

import json
import logging
import time as time_module
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connectors.base import (
    AuthError,
    BusyPeriod,
    Changes,
    Connector,
    ConnectorError,
    RemoteObject,
    StaleSyncState,
)
from syncd.busy import BusyOccurrence, busy_from_ical, parse_calendar, position_outside, to_utc
from syncd.busy_google import busy_from_google_event
from syncd.calendars import ConnectorFactory, default_factory
from syncd.config import Config
from syncd.errors import UserError
from syncd.secrets import UndecryptableSecret
from syncd.store import calendars as store
from syncd.store.db import Database
from syncd.store.leases import claim_due_calendars, release_calendar
from syncd.store.models import Calendar, CalendarAccount

if TYPE_CHECKING:
    from syncd.booking import LiveCheck
    from syncd.daemon import JobContext

log = logging.getLogger(__name__)

WINDOW_BEFORE = timedelta(days=1)
WINDOW_AFTER_HORIZON = timedelta(days=1)
DEFAULT_LIVE_CHECK_TIMEOUT = 10.0
MANUAL_LEASE = timedelta(minutes=5)
_DAY = timedelta(days=1)
# An object whose events start at or after (window end - this) may gain rows when the window
# moves; the slack covers events whose wall time is read in another zone than guessed here.
_REEXPAND_SLACK = timedelta(days=1)


# -- the window -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncWindow:
    start: datetime
    end: datetime


def sync_window(now: datetime, horizon_days: int) -> SyncWindow:
    """The rolling window, rounded out to whole UTC days."""
    start = _floor_day(now - WINDOW_BEFORE)
    end = _floor_day(now + timedelta(days=horizon_days) + WINDOW_AFTER_HORIZON) + _DAY
    return SyncWindow(start, end)


def _floor_day(moment: datetime) -> datetime:
    utc = moment.astimezone(UTC)
    return datetime.combine(utc.date(), time.min, tzinfo=UTC)


# -- one calendar -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _CalendarView:
    """What a pull needs to know about the calendar, read before any network call."""

    id: int
    remote_id: str
    state: str | None
    window_end: datetime | None
    timezone: str | None
    mentor_timezone: str
    mentor_emails: tuple[str, ...]


@dataclass
class SyncResult:
    calendar_id: int
    full: bool = False
    upserted: int = 0
    deleted: int = 0
    malformed: list[str] = field(default_factory=list)  # refs
    reexpanded: int = 0


def sync_calendar(
    db: Database, calendar_id: int, connector: Connector, *, now: datetime, horizon_days: int
) -> SyncResult:
    """Pull one calendar's changes into the busy cache. Connector errors propagate."""
    began = time_module.monotonic()
    view = _load_view(db, calendar_id)
    window = sync_window(now, horizon_days)
    changes = _pull(connector, view)
    zone = _zone_name(changes.calendar_timezone, view.timezone, view.mentor_timezone)
    with db.write_session() as session:
        result = _apply(session, view, changes, window, zone)
    log.info(
        "pulled calendar %s: %s, %d changed, %d deleted, %d malformed, %d re-expanded in %.3fs",
        calendar_id,
        "full" if result.full else "incremental",
        result.upserted,
        result.deleted,
        len(result.malformed),
        result.reexpanded,
        time_module.monotonic() - began,
    )
    return result


def _load_view(db: Database, calendar_id: int) -> _CalendarView:
    with db.session() as session:
        calendar = store.get_calendar(session, calendar_id)
        if calendar is None:
            raise UserError(f"unknown calendar {calendar_id}")
        mentor = store.mentor_of(session, calendar)
        account = store.get_account(session, calendar.account_id) if calendar.account_id else None
        return _CalendarView(
            id=calendar.id,
            remote_id=calendar.remote_id,
            state=calendar.sync_state,
            window_end=calendar.window_end,
            timezone=calendar.timezone,
            mentor_timezone=mentor.timezone,
            mentor_emails=_mentor_emails(mentor.email, account, calendar),
        )


def _mentor_emails(
    email: str, account: CalendarAccount | None, calendar: Calendar
) -> tuple[str, ...]:
    """Addresses under which the mentor may appear as an attendee (to honour declines)."""
    candidates = [email, account.username if account else None, calendar.remote_id]
    return tuple(dict.fromkeys(c.lower() for c in candidates if c and "@" in c and "/" not in c))


def _pull(connector: Connector, view: _CalendarView) -> Changes:
    try:
        changes = connector.pull(view.remote_id, view.state)
    except StaleSyncState as error:
        log.info("calendar %s: sync state rejected (%s); full resync", view.id, error)
        changes = connector.pull(view.remote_id, None)
        return _as_full(changes)
    return _as_full(changes) if view.state is None else changes


def _as_full(changes: Changes) -> Changes:
    if changes.full:
        return changes
    return Changes(changes.upserts, (), changes.state, True, changes.calendar_timezone)


def _zone_name(*candidates: str | None) -> str:
    """The first candidate that is a known IANA zone (the calendar's, else the mentor's)."""
    for name in candidates:
        if name and _is_zone(name):
            return name
    return "UTC"


def _is_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _apply(
    session: Any, view: _CalendarView, changes: Changes, window: SyncWindow, zone: str
) -> SyncResult:
    result = SyncResult(view.id, full=changes.full)
    if changes.full:
        store.wipe_calendar(session, view.id)
    else:
        store.delete_objects(session, view.id, changes.deleted)
        result.deleted = len(changes.deleted)
    translated = [_translate_safely(view, remote, window, zone) for remote in changes.upserts]
    _store_objects(session, view.id, translated, replace=not changes.full)
    result.malformed.extend(t.remote.ref for t in translated if t.error is not None)
    result.upserted = len(changes.upserts)
    if not changes.full and _window_moved(view.window_end, window.end):
        fresh = {remote.ref for remote in changes.upserts}
        result.reexpanded = _reexpand(session, view, window, zone, skip=fresh)
    _record_pull(session, view.id, changes, window)
    return result


def _window_moved(previous_end: datetime | None, new_end: datetime) -> bool:
    return previous_end is None or new_end > previous_end


def _record_pull(session: Any, calendar_id: int, changes: Changes, window: SyncWindow) -> None:
    calendar = store.get_calendar(session, calendar_id)
    assert calendar is not None
    calendar.sync_state, calendar.window_end = changes.state, window.end
    if changes.calendar_timezone and _is_zone(changes.calendar_timezone):
        calendar.timezone = changes.calendar_timezone


def _reexpand(
    session: Any, view: _CalendarView, window: SyncWindow, zone: str, *, skip: set[str]
) -> int:
    """Expand stored recurring masters (and far-out events) again for the moved window."""
    translated = []
    for stored in store.objects_to_reexpand(session, view.id):
        if stored.ref in skip:
            continue
        data: Any = json.loads(stored.data) if stored.kind == "google" else stored.data
        remote = RemoteObject(stored.ref, stored.etag, stored.kind, data)
        translated.append(_translate_safely(view, remote, window, zone))
    refs = [t.remote.ref for t in translated]
    store.delete_busy(session, view.id, refs)
    store.insert_busy(session, view.id, _busy_rows(translated))
    return len(translated)


# -- translating objects ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Translated:
    remote: RemoteObject
    occurrences: list[BusyOccurrence]
    reaches_beyond: bool
    error: str | None


def _translate_safely(
    view: _CalendarView, remote: RemoteObject, window: SyncWindow, zone: str
) -> _Translated:
    """The object's busy occurrences; a malformed object yields none and its error."""
    try:
        occurrences, reaches_beyond = _translate(remote, window, zone, view.mentor_emails)
    except ValueError as exc:  # MalformedCalendarData and bad zone names in the data
        log.warning("calendar %s: skipping malformed object %s: %s", view.id, remote.ref, exc)
        return _Translated(remote, [], False, str(exc))
    return _Translated(remote, occurrences, reaches_beyond, None)


def _store_objects(
    session: Any, calendar_id: int, translated: Sequence[_Translated], *, replace: bool
) -> None:
    """Raw objects and their busy rows in bulk; `replace` drops what they had before."""
    if replace:
        store.delete_objects(session, calendar_id, [t.remote.ref for t in translated])
    store.insert_objects(
        session,
        calendar_id,
        [
            {
                "ref": t.remote.ref,
                "etag": t.remote.etag,
                "kind": t.remote.kind,
                "data": json.dumps(t.remote.data)
                if t.remote.kind == "google"
                else str(t.remote.data),
                "recurring": t.reaches_beyond,
                "error": t.error,
            }
            for t in translated
        ],
    )
    store.insert_busy(session, calendar_id, _busy_rows(translated))


def _busy_rows(translated: Sequence[_Translated]) -> list[dict[str, Any]]:
    return [
        {
            "object_ref": t.remote.ref,
            "start": o.start,
            "end": o.end,
            "uid": o.uid[:1000],
            "booking_id": o.booking_id,
        }
        for t in translated
        for o in t.occurrences
    ]


def _translate(
    remote: RemoteObject, window: SyncWindow, zone: str, mentor_emails: Sequence[str]
) -> tuple[list[BusyOccurrence], bool]:
    """Busy occurrences inside the window, and whether the object reaches beyond its end."""
    if remote.kind == "google":
        return _translate_google(remote.data, window, zone, mentor_emails)
    if remote.kind != "ical":
        raise ValueError(f"unknown object kind {remote.kind!r}")
    ics = str(remote.data)
    outside = position_outside(ics, window.start, window.end)
    if outside is not None:  # no occurrence in the window; kept for when the window moves
        return [], outside == "after"
    calendar = parse_calendar(ics)  # parsed once for both questions
    occurrences = busy_from_ical(
        calendar,
        window_start=window.start,
        window_end=window.end,
        default_timezone=zone,
        mentor_emails=mentor_emails,
    )
    return occurrences, _ical_reaches_beyond(ics, calendar, window.end, ZoneInfo(zone))


def _translate_google(
    event: Any, window: SyncWindow, zone: str, mentor_emails: Sequence[str]
) -> tuple[list[BusyOccurrence], bool]:
    if not isinstance(event, dict):
        raise ValueError("Google object is not a JSON object")
    occurrence = busy_from_google_event(event, calendar_timezone=zone, mentor_emails=mentor_emails)
    if occurrence is None:
        return [], False
    inside = occurrence.start < window.end and occurrence.end > window.start
    return ([occurrence] if inside else []), occurrence.start >= window.end - _REEXPAND_SLACK


def _ical_reaches_beyond(ics: str, calendar: Any, window_end: datetime, zone: ZoneInfo) -> bool:
    if "RRULE" in ics or "RDATE" in ics:
        return True  # recurring masters are always expanded again as the window moves
    limit = window_end - _REEXPAND_SLACK
    for event in calendar.walk("VEVENT"):
        start: Any = event["DTSTART"]
        if isinstance(start.dt, date) and to_utc(start.dt, zone) >= limit:
            return True
    return False


# -- claimed calendars: outcome bookkeeping ---------------------------------------------------


def sync_claimed(
    db: Database,
    calendar_id: int,
    factory: ConnectorFactory,
    *,
    owner: str,
    now: datetime,
    horizon_days: int,
) -> SyncResult | None:
    """Pull a calendar `owner` holds the lease of, then release it with the outcome recorded
    (success, backoff, or needs-reconnect). Never raises for a calendar's own failure."""
    try:
        result = _sync_with_account(db, calendar_id, factory, now=now, horizon_days=horizon_days)
    except (AuthError, UndecryptableSecret) as error:
        _needs_reconnect(db, calendar_id, owner, now, error)
        return None
    except ConnectorError as error:
        log.warning("calendar %s: pull failed, will retry with backoff: %s", calendar_id, error)
        _release(db, calendar_id, owner, now, error=f"{type(error).__name__}: {error}")
        return None
    except Exception as error:
        log.exception("calendar %s: pull failed unexpectedly", calendar_id)
        _release(db, calendar_id, owner, now, error=f"internal error: {type(error).__name__}")
        return None
    # The next pull is due an interval after this one finished, not after it was claimed.
    _release(db, calendar_id, owner, max(now, datetime.now(UTC)), error=None)
    return result


def _sync_with_account(
    db: Database, calendar_id: int, factory: ConnectorFactory, *, now: datetime, horizon_days: int
) -> SyncResult:
    with db.session() as session:
        calendar = store.get_calendar(session, calendar_id)
        account_id = calendar.account_id if calendar else None
        account = store.get_account(session, account_id) if account_id else None
    if account is None:
        return SyncResult(calendar_id)  # a calendar without an account has nothing to pull
    connector = factory(account)
    try:
        return sync_calendar(db, calendar_id, connector, now=now, horizon_days=horizon_days)
    finally:
        connector.close()


def _release(
    db: Database, calendar_id: int, owner: str, now: datetime, *, error: str | None
) -> None:
    with db.write_session() as session:
        held = release_calendar(
            session, calendar_id, owner, success=error is None, now=now, error=error
        )
    if not held:
        log.warning("calendar %s: lease lost while pulling; outcome not recorded", calendar_id)


def _needs_reconnect(
    db: Database, calendar_id: int, owner: str, now: datetime, error: Exception
) -> None:
    log.error(
        "calendar %s: the provider rejected syncd's credentials; it will not be pulled until "
        "the mentor reconnects it (syncd calendar add ...): %s",
        calendar_id,
        error,
    )
    with db.write_session() as session:
        store.mark_needs_reconnect(session, calendar_id)
        release_calendar(
            session, calendar_id, owner, success=False, now=now, error=f"needs reconnect: {error}"
        )


# -- the daemon job and manual pulls ----------------------------------------------------------


def sync_due_calendars(ctx: JobContext) -> int:
    """Daemon job: claim due calendars (leases), pull them on the network pool, release each.
    Returns how many pulls succeeded."""
    with ctx.db.session() as session:
        if not store.has_connected_calendars(session):
            return 0  # nothing to pull: no decryption key needed either
    factory = default_factory(ctx.config)  # a missing key fails the job before claiming
    now = ctx.now()
    settings = ctx.settings
    with ctx.db.write_session() as session:
        claimed = [
            c.id
            for c in claim_due_calendars(
                session, ctx.owner, now, settings.lease, settings.batch_size
            )
        ]
        horizon = store.longest_horizon_days(session)
    if not claimed:
        return 0
    futures = [
        ctx.network.submit(
            sync_claimed,
            ctx.db,
            calendar_id,
            factory,
            owner=ctx.owner,
            now=now,
            horizon_days=horizon,
        )
        for calendar_id in claimed
        if not ctx.stop.is_set()
    ]
    done, _ = wait(futures, timeout=settings.lease.total_seconds())
    return sum(1 for future in done if _succeeded(future))


def _succeeded(future: Future[SyncResult | None]) -> bool:
    return future.exception() is None and future.result() is not None


@dataclass(frozen=True)
class ManualSync:
    calendar_id: int
    result: SyncResult | None  # None: failed (see error) or skipped
    error: str | None = None


def sync_now(
    db: Database,
    config: Config,
    *,
    calendar_ids: Sequence[int] | None = None,
    mentor_id: str | None = None,
    now: datetime,
    owner: str = "cli",
    factory: ConnectorFactory | None = None,
) -> list[ManualSync]:
    """Pull the given calendars (default: every one, or the mentor's) now, due or not."""
    factory = factory or default_factory(config)
    with db.session() as session:
        if calendar_ids is None:
            calendar_ids = [c.id for c in store.list_calendars(session, mentor_id)]
        horizon = store.longest_horizon_days(session)
    return [_sync_one_now(db, cid, factory, owner, now, horizon) for cid in calendar_ids]


def _sync_one_now(
    db: Database,
    calendar_id: int,
    factory: ConnectorFactory,
    owner: str,
    now: datetime,
    horizon: int,
) -> ManualSync:
    with db.write_session() as session:
        calendar = store.take_calendar_lease(session, calendar_id, owner, now, MANUAL_LEASE)
        if calendar is None:
            exists = store.get_calendar(session, calendar_id) is not None
            reason = "being pulled by the daemon right now" if exists else "no such calendar"
            return ManualSync(calendar_id, None, reason)
    result = sync_claimed(db, calendar_id, factory, owner=owner, now=now, horizon_days=horizon)
    if result is not None:
        return ManualSync(calendar_id, result)
    with db.session() as session:
        after = store.get_calendar(session, calendar_id)
        return ManualSync(calendar_id, None, after.last_error if after else "vanished")


# -- live check for bookings ------------------------------------------------------------------


def live_check_for(
    db: Database,
    config: Config,
    *,
    timeout: float = DEFAULT_LIVE_CHECK_TIMEOUT,
    factory: ConnectorFactory | None = None,
) -> LiveCheck:
    """A BookingService live check: asks every blocking calendar of the mentor, per account in
    parallel, whether [start, end) is free. True free, False busy, None when some calendar
    could not be asked within `timeout` seconds (and none said busy)."""

    def check(
        mentor_id: str,
        start: datetime,
        end: datetime,
        own: tuple[datetime, datetime] | None = None,
    ) -> bool | None:
        groups = _blocking_by_account(db, mentor_id)
        if not groups:
            return True
        # Built only when needed: a mentor without calendars needs no decryption key.
        chosen = factory or default_factory(config)
        answers = _ask_all(chosen, groups, Interval(start, end), own, timeout)
        if False in answers:
            return False
        return None if None in answers else True

    return check


def _blocking_by_account(
    db: Database, mentor_id: str
) -> list[tuple[CalendarAccount | None, list[str]]]:
    """(account, remote ids) for the mentor's blocking calendars; account None when the
    account needs reconnecting (it cannot be asked)."""
    groups: dict[int, tuple[CalendarAccount | None, list[str]]] = {}
    with db.session() as session:
        for calendar in store.blocking_calendars(session, mentor_id):
            if calendar.account_id is None:
                continue
            account = store.get_account(session, calendar.account_id)
            usable = account if account and not account.needs_reconnect else None
            if calendar.needs_reconnect:
                usable = None
            entry = groups.setdefault(calendar.account_id, (usable, []))
            entry[1].append(calendar.remote_id)
    return list(groups.values())


def _ask_all(
    factory: ConnectorFactory,
    groups: list[tuple[CalendarAccount | None, list[str]]],
    asked: Interval,
    own: tuple[datetime, datetime] | None,
    timeout: float,
) -> list[bool | None]:
    pool = ThreadPoolExecutor(max_workers=len(groups), thread_name_prefix="syncd-live")
    try:
        futures = [
            pool.submit(_ask_account, factory, account, remotes, asked, own)
            for account, remotes in groups
            if account is not None
        ]
        answers: list[bool | None] = [None] * (len(groups) - len(futures))
        done, not_done = wait(futures, timeout=timeout)
        if not_done:
            log.warning("live check: %d calendar account(s) did not answer in time", len(not_done))
        answers += [None] * len(not_done)
        answers += [_answer(future) for future in done]
        return answers
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # never wait for a hung provider


def _answer(future: Future[bool]) -> bool | None:
    try:
        return future.result(timeout=0)
    except (ConnectorError, UserError, FutureTimeout) as error:
        log.warning("live check: a calendar could not be asked: %s", error)
        return None
    except Exception:
        log.exception("live check failed unexpectedly")
        return None


def _ask_account(
    factory: ConnectorFactory,
    account: CalendarAccount,
    remotes: list[str],
    asked: Interval,
    own: tuple[datetime, datetime] | None,
) -> bool:
    connector = factory(account)
    try:
        periods = connector.busy(remotes, asked.start, asked.end)
    finally:
        connector.close()
    return not any(_blocks(period, asked, own) for period in periods)


@dataclass(frozen=True)
class Interval:
    start: datetime
    end: datetime


def _blocks(period: BusyPeriod, asked: Interval, own: tuple[datetime, datetime] | None) -> bool:
    """Whether a busy period makes the asked range unavailable. The booking's own event (when
    it is being moved) does not: only the part of the period outside it counts."""
    low, high = max(period.start, asked.start), min(period.end, asked.end)
    if low >= high:
        return False
    return own is None or low < own[0] or high > own[1]
