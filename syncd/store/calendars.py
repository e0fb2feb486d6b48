"""SQL for connected calendars: accounts, calendars, raw objects and the busy cache."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, func, insert, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from syncd.store.models import (
    Booking,
    BusyInterval,
    Calendar,
    CalendarAccount,
    CalendarObject,
    Mentor,
    OutboxItem,
    Service,
)

DEFAULT_HORIZON_DAYS = 14

# -- accounts and calendars -------------------------------------------------------------------


def get_calendar(session: Session, calendar_id: int) -> Calendar | None:
    return session.get(Calendar, calendar_id)


def get_account(session: Session, account_id: int) -> CalendarAccount | None:
    return session.get(CalendarAccount, account_id)


def has_connected_calendars(session: Session) -> bool:
    query = select(Calendar.id).where(Calendar.account_id.is_not(None)).limit(1)
    return session.scalar(query) is not None


def list_calendars(session: Session, mentor_id: str | None = None) -> Sequence[Calendar]:
    query = select(Calendar).order_by(Calendar.mentor_id, Calendar.id)
    if mentor_id is not None:
        query = query.where(Calendar.mentor_id == mentor_id)
    return session.scalars(query).all()


def blocking_calendars(session: Session, mentor_id: str) -> Sequence[Calendar]:
    query = select(Calendar).where(Calendar.mentor_id == mentor_id, Calendar.blocks_time.is_(True))
    return session.scalars(query.order_by(Calendar.id)).all()


def destination_calendar(session: Session, mentor_id: str) -> Calendar | None:
    query = select(Calendar).where(
        Calendar.mentor_id == mentor_id, Calendar.is_destination.is_(True)
    )
    return session.scalars(query.order_by(Calendar.id)).first()


def find_account(
    session: Session, mentor_id: str, provider: str, url: str | None, username: str | None
) -> CalendarAccount | None:
    """The account a reconnect should update rather than duplicate."""
    query = select(CalendarAccount).where(
        CalendarAccount.mentor_id == mentor_id,
        CalendarAccount.provider == provider,
        _equal_or_null(CalendarAccount.url, url),
        _equal_or_null(CalendarAccount.username, username),
    )
    return session.scalars(query.order_by(CalendarAccount.id)).first()


def _equal_or_null(
    column: InstrumentedAttribute[str | None], value: str | None
) -> ColumnElement[bool]:
    return column.is_(None) if value is None else column == value


def calendars_of_account(session: Session, account_id: int) -> Sequence[Calendar]:
    return session.scalars(select(Calendar).where(Calendar.account_id == account_id)).all()


def calendar_by_remote(session: Session, account_id: int, remote_id: str) -> Calendar | None:
    query = select(Calendar).where(
        Calendar.account_id == account_id, Calendar.remote_id == remote_id
    )
    return session.scalars(query).first()


def clear_other_destinations(session: Session, mentor_id: str, keep_calendar_id: int) -> None:
    """A mentor has one destination calendar: the one just chosen."""
    session.execute(
        update(Calendar)
        .where(Calendar.mentor_id == mentor_id, Calendar.id != keep_calendar_id)
        .values(is_destination=False)
        .execution_options(synchronize_session=False)
    )


def mark_needs_reconnect(session: Session, calendar_id: int) -> None:
    """The provider rejected the credentials: stop pulling this calendar and its account's."""
    calendar = session.get(Calendar, calendar_id)
    if calendar is None:
        return
    calendar.needs_reconnect = True
    if calendar.account_id is not None:
        account = session.get(CalendarAccount, calendar.account_id)
        if account is not None:
            account.needs_reconnect = True
    session.flush()


def take_calendar_lease(
    session: Session, calendar_id: int, owner: str, now: datetime, lease: timedelta
) -> Calendar | None:
    """Lease one calendar now, due or not (a manual `syncd calendar sync`); None when someone
    else holds a live lease on it."""
    calendar = session.get(Calendar, calendar_id)
    if calendar is None:
        return None
    held = calendar.lease_owner is not None and calendar.lease_expires is not None
    if held and calendar.lease_owner != owner and calendar.lease_expires > now:  # type: ignore[operator]
        return None
    calendar.lease_owner, calendar.lease_expires = owner, now + lease
    session.flush()
    return calendar


def mentor_of(session: Session, calendar: Calendar) -> Mentor:
    mentor = session.get(Mentor, calendar.mentor_id)
    assert mentor is not None  # foreign key
    return mentor


def longest_horizon_days(session: Session) -> int:
    longest = session.scalar(select(func.max(Service.horizon_days)))
    return int(longest) if longest else DEFAULT_HORIZON_DAYS


# -- raw objects ------------------------------------------------------------------------------


def insert_objects(session: Session, calendar_id: int, rows: Sequence[dict[str, Any]]) -> None:
    """Bulk insert raw objects (callers delete the previous versions first)."""
    if rows:
        session.execute(
            insert(CalendarObject), [{**row, "calendar_id": calendar_id} for row in rows]
        )


def objects_to_reexpand(session: Session, calendar_id: int) -> Sequence[CalendarObject]:
    """Objects that may have occurrences beyond the window end (recurring masters and events
    further out), skipping those that could not be read."""
    query = select(CalendarObject).where(
        CalendarObject.calendar_id == calendar_id,
        CalendarObject.recurring.is_(True),
        CalendarObject.error.is_(None),
    )
    return session.scalars(query.order_by(CalendarObject.id)).all()


def calendar_objects(session: Session, calendar_id: int) -> Sequence[CalendarObject]:
    query = select(CalendarObject).where(CalendarObject.calendar_id == calendar_id)
    return session.scalars(query.order_by(CalendarObject.ref)).all()


def delete_objects(session: Session, calendar_id: int, refs: Iterable[str]) -> None:
    """Delete objects and their busy rows."""
    refs = list(refs)
    for chunk in _chunks(refs):
        session.execute(
            delete(CalendarObject).where(
                CalendarObject.calendar_id == calendar_id, CalendarObject.ref.in_(chunk)
            )
        )
    delete_busy(session, calendar_id, refs)


def _chunks(values: Sequence[str], size: int = 500) -> Iterable[Sequence[str]]:
    """Keep IN lists well under every database's bound-parameter limit."""
    return (values[i : i + size] for i in range(0, len(values), size))


def wipe_calendar(session: Session, calendar_id: int) -> None:
    """Forget everything pulled from a calendar (before a full resync)."""
    session.execute(delete(CalendarObject).where(CalendarObject.calendar_id == calendar_id))
    session.execute(delete(BusyInterval).where(BusyInterval.calendar_id == calendar_id))


# -- busy cache -------------------------------------------------------------------------------


def insert_busy(session: Session, calendar_id: int, rows: Sequence[dict[str, Any]]) -> None:
    """Bulk insert busy rows (dicts with object_ref, start, end, uid, booking_id)."""
    if rows:
        session.execute(insert(BusyInterval), [{**row, "calendar_id": calendar_id} for row in rows])


def delete_busy(session: Session, calendar_id: int, refs: Iterable[str]) -> None:
    for chunk in _chunks(list(refs)):
        session.execute(
            delete(BusyInterval).where(
                BusyInterval.calendar_id == calendar_id, BusyInterval.object_ref.in_(chunk)
            )
        )


def busy_rows(session: Session, calendar_id: int) -> Sequence[BusyInterval]:
    query = select(BusyInterval).where(BusyInterval.calendar_id == calendar_id)
    return session.scalars(query.order_by(BusyInterval.start, BusyInterval.id)).all()


def requeue_failed_writes(session: Session, mentor_id: str, now: datetime) -> int:
    """Failed calendar write-backs of the mentor's bookings become pending again (after a
    reconnect); superseded ones are skipped by the outbox as usual. Returns how many."""
    bookings = select(Booking.id).where(Booking.mentor_id == mentor_id)
    result = session.execute(
        update(OutboxItem)
        .where(
            OutboxItem.status == "failed",
            OutboxItem.kind.in_(("calendar_upsert", "calendar_delete")),
            OutboxItem.booking_id.in_(bookings),
        )
        .values(status="pending", attempts=0, next_attempt_at=now, last_error=None)
    )
    return int(getattr(result, "rowcount", 0) or 0)
