"""Claiming work items (calendars to pull, outbox rows to send) with leases.

A lease is (lease_owner, lease_expires) on the row. Claiming picks due rows whose lease is free
or expired and stamps them in the same transaction. On PostgreSQL the rows are selected
`FOR UPDATE SKIP LOCKED`, so concurrent replicas never wait for each other and never get the same
row; SQLite has a single daemon and `write_session()` (BEGIN IMMEDIATE) serialises writers.
A crashed replica's rows become claimable again when their lease expires. Only the owner of a
lease may release it: a replica whose lease was taken over must not overwrite the new owner.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import ColumnElement, Select, exists, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from syncd.store.models import Calendar, CalendarAccount, OutboxItem

_random = random.SystemRandom()
RowT = TypeVar("RowT")


@dataclass(frozen=True)
class Backoff:
    """How long to wait before the next try: base * 2**failures, capped, ± jitter (a fraction)."""

    cap: timedelta = timedelta(hours=1)
    jitter: float = 0.1

    def after_success(self, interval: timedelta, rng: random.Random = _random) -> timedelta:
        return self._jittered(interval, rng)

    def after_failures(
        self, base: timedelta, failures: int, rng: random.Random = _random
    ) -> timedelta:
        # Exponent clamped: 2**60 seconds overflows timedelta long before the cap applies.
        raw = base * (2 ** min(max(failures, 0), 30))
        return self._jittered(min(raw, self.cap), rng)

    def _jittered(self, delay: timedelta, rng: random.Random) -> timedelta:
        # Jitter spreads replicas and calendars apart so they do not pull in lockstep.
        factor = 1.0 + rng.uniform(-self.jitter, self.jitter)
        return timedelta(seconds=max(delay.total_seconds() * factor, 0.0))


CALENDAR_BACKOFF = Backoff(cap=timedelta(hours=1))
OUTBOX_BACKOFF = Backoff(cap=timedelta(minutes=30))
OUTBOX_RETRY_BASE = timedelta(seconds=30)
OUTBOX_MAX_ATTEMPTS = 10


def _skip_locked(session: Session, query: Select[RowT]) -> Select[RowT]:
    if session.get_bind().dialect.name == "postgresql":
        return query.with_for_update(skip_locked=True)
    return query


def _lease_free(
    owner: InstrumentedAttribute[str | None],
    expires: InstrumentedAttribute[datetime | None],
    now: datetime,
) -> ColumnElement[bool]:
    return or_(owner.is_(None), expires.is_(None), expires <= now)


# -- calendars --------------------------------------------------------------------------------


def claim_due_calendars(
    session: Session, owner: str, now: datetime, lease: timedelta, limit: int
) -> list[Calendar]:
    """Calendars due for a pull (never synced, or next_sync_at <= now), not waiting for the
    mentor to reconnect, whose lease is free or expired; leased to `owner` until now + lease."""
    account_needs_reconnect = exists().where(
        CalendarAccount.id == Calendar.account_id, CalendarAccount.needs_reconnect.is_(True)
    )
    query = (
        select(Calendar)
        .where(
            or_(Calendar.next_sync_at.is_(None), Calendar.next_sync_at <= now),
            Calendar.needs_reconnect.is_(False),
            ~account_needs_reconnect,
            _lease_free(Calendar.lease_owner, Calendar.lease_expires, now),
        )
        .order_by(Calendar.next_sync_at.asc().nulls_first(), Calendar.id)
        .limit(limit)
    )
    calendars = list(session.scalars(_skip_locked(session, query)))
    for calendar in calendars:
        calendar.lease_owner, calendar.lease_expires = owner, now + lease
    session.flush()
    return calendars


def release_calendar(
    session: Session,
    calendar_id: int,
    owner: str,
    *,
    success: bool,
    now: datetime,
    error: str | None = None,
    backoff: Backoff = CALENDAR_BACKOFF,
    rng: random.Random = _random,
) -> bool:
    """Give a calendar back after a pull and schedule the next one. Returns False (and changes
    nothing) when `owner` no longer holds the lease."""
    calendar = session.scalars(
        select(Calendar).where(Calendar.id == calendar_id, Calendar.lease_owner == owner)
    ).first()
    if calendar is None:
        return False
    interval = timedelta(seconds=calendar.sync_interval_s)
    if success:
        calendar.next_sync_at = now + backoff.after_success(interval, rng)
        calendar.consecutive_failures, calendar.last_success, calendar.last_error = 0, now, None
    else:
        failures = calendar.consecutive_failures + 1
        # The first failure waits one interval, then 2, 4, ... intervals up to the cap.
        calendar.next_sync_at = now + backoff.after_failures(interval, failures - 1, rng)
        calendar.consecutive_failures, calendar.last_error = failures, error
    calendar.lease_owner, calendar.lease_expires = None, None
    session.flush()
    return True


# -- outbox -----------------------------------------------------------------------------------


def claim_due_outbox(
    session: Session, owner: str, now: datetime, lease: timedelta, limit: int
) -> list[OutboxItem]:
    """Pending outbox rows due now whose lease is free or expired, oldest first. Each claim
    counts as an attempt, so a row that crashes its replica every time still runs out."""
    query = (
        select(OutboxItem)
        .where(
            OutboxItem.status == "pending",
            OutboxItem.next_attempt_at <= now,
            _lease_free(OutboxItem.lease_owner, OutboxItem.lease_expires, now),
        )
        .order_by(OutboxItem.next_attempt_at, OutboxItem.id)
        .limit(limit)
    )
    items = list(session.scalars(_skip_locked(session, query)))
    for item in items:
        item.lease_owner, item.lease_expires = owner, now + lease
        item.attempts += 1
    session.flush()
    return items


def _owned_outbox(session: Session, item_id: int, owner: str) -> OutboxItem | None:
    return session.scalars(
        select(OutboxItem).where(OutboxItem.id == item_id, OutboxItem.lease_owner == owner)
    ).first()


def finish_outbox(session: Session, item_id: int, owner: str, now: datetime) -> bool:
    """Mark a row done. False when `owner` no longer holds its lease."""
    item = _owned_outbox(session, item_id, owner)
    if item is None:
        return False
    item.status, item.done_at, item.last_error = "done", now, None
    item.lease_owner, item.lease_expires = None, None
    session.flush()
    return True


def fail_outbox(
    session: Session,
    item_id: int,
    owner: str,
    now: datetime,
    error: str,
    permanent: bool,
    *,
    max_attempts: int = OUTBOX_MAX_ATTEMPTS,
    backoff: Backoff = OUTBOX_BACKOFF,
    rng: random.Random = _random,
) -> bool:
    """Record a failed attempt: retry later with backoff, or give up (status failed) when the
    error is permanent or the attempts are used up. False when `owner` lost the lease."""
    item = _owned_outbox(session, item_id, owner)
    if item is None:
        return False
    item.last_error = error
    if permanent or item.attempts >= max_attempts:
        item.status = "failed"
    else:
        item.next_attempt_at = now + backoff.after_failures(
            OUTBOX_RETRY_BASE, item.attempts - 1, rng
        )
    item.lease_owner, item.lease_expires = None, None
    session.flush()
    return True


# -- shutdown ---------------------------------------------------------------------------------


def release_all(session: Session, owner: str) -> int:
    """Drop every lease `owner` holds (clean shutdown), so other replicas need not wait for
    them to expire. Work is left due as it was. Returns how many rows were released."""
    released = 0
    for model in (Calendar, OutboxItem):
        result = session.execute(
            update(model)
            .where(model.lease_owner == owner)
            .values(lease_owner=None, lease_expires=None)
            .execution_options(synchronize_session=False)
        )
        released += result.rowcount  # type: ignore[attr-defined]
    return released
