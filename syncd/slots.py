"""Slot queries: load rules, busy time and bookings from the store, ask the pure engine."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time, timedelta

from sqlalchemy.orm import Session

from syncd import availability as engine
from syncd.directory import require_mentor, require_service
from syncd.errors import UserError
from syncd.store import repo
from syncd.store.models import Booking, Mentor, Service
from syncd.timeutil import local_dates_range, zone

MAX_DAYS = 90
# Busy time and bookings are loaded this much around the asked range, so buffers, durations
# and per-day limits at the edges see everything that matters.
_MARGIN = timedelta(days=2)


def service_rules(service: Service) -> engine.ServiceRules:
    return engine.ServiceRules(
        duration=timedelta(minutes=service.duration_min),
        buffer_before=timedelta(minutes=service.buffer_before_min),
        buffer_after=timedelta(minutes=service.buffer_after_min),
        min_notice=timedelta(minutes=service.min_notice_min),
        horizon=timedelta(days=service.horizon_days),
        step=timedelta(minutes=service.step_min),
        max_per_day=service.max_per_day,
    )


def _weekly(mentor: Mentor) -> tuple[engine.WeeklyRule, ...]:
    return tuple(
        engine.WeeklyRule(weekday=row.weekday, start=row.start_time, end=row.end_time)
        for row in mentor.weekly_hours
    )


def _overrides(mentor: Mentor) -> tuple[engine.DateOverride, ...]:
    by_day: dict[date, list[tuple[time, time]]] = {}
    for row in mentor.overrides:
        ranges = by_day.setdefault(row.day, [])
        if row.start_time is not None and row.end_time is not None:
            ranges.append((row.start_time, row.end_time))
    return tuple(engine.DateOverride(day=day, ranges=tuple(r)) for day, r in sorted(by_day.items()))


def load_availability(
    session: Session,
    service: Service,
    mentors: Sequence[Mentor],
    start: datetime,
    end: datetime,
    *,
    ignore_booking: str | None = None,
) -> list[engine.MentorAvailability]:
    """Everything the engine needs about each mentor for slots starting in [start, end)."""
    ids = [mentor.id for mentor in mentors]
    wide_start, wide_end = start - _MARGIN, end + _MARGIN
    busy = repo.calendar_busy(session, ids, wide_start, wide_end)
    booked = [
        booking
        for booking in repo.live_bookings_of_mentors(session, ids, wide_start, wide_end)
        if booking.id != ignore_booking
    ]
    return [
        _mentor_availability(service, mentor, busy.get(mentor.id, []), booked) for mentor in mentors
    ]


def _mentor_availability(
    service: Service,
    mentor: Mentor,
    busy: list[tuple[datetime, datetime]],
    booked: Sequence[Booking],
) -> engine.MentorAvailability:
    own = [booking for booking in booked if booking.mentor_id == mentor.id]
    intervals = [engine.Interval(start, end) for start, end in busy]
    # A booking blocks its own buffers too, exactly as the PostgreSQL exclusion constraint does.
    intervals += [engine.Interval(booking.block_start, booking.block_end) for booking in own]
    return engine.MentorAvailability(
        mentor_id=mentor.id,
        timezone=mentor.timezone,
        weekly=_weekly(mentor),
        overrides=_overrides(mentor),
        busy=tuple(sorted(intervals, key=lambda interval: interval.start)),
        booked_starts=tuple(b.start for b in own if b.service_slug == service.slug),
    )


def find_slots(
    session: Session,
    slug: str,
    *,
    tz_name: str,
    first_day: date,
    days: int,
    now: datetime,
    mentor_id: str | None = None,
) -> list[engine.Slot]:
    """Bookable slots of a service starting within `days` local dates of `tz_name`."""
    tz = zone(tz_name)
    if not 1 <= days <= MAX_DAYS:
        raise UserError(f"days must be between 1 and {MAX_DAYS}")
    service = require_service(session, slug)
    mentors = _mentors_for(session, service, mentor_id)
    start, end = local_dates_range(first_day, days, tz)
    availability = load_availability(session, service, mentors, start, end)
    return engine.compute_slots(service_rules(service), availability, now, start, end)


def _mentors_for(session: Session, service: Service, mentor_id: str | None) -> list[Mentor]:
    mentors = list(repo.bookable_mentors(session, service.slug))
    if mentor_id is None:
        return mentors
    require_mentor(session, mentor_id)
    chosen = [mentor for mentor in mentors if mentor.id == mentor_id]
    if not chosen:
        raise UserError(f"mentor {mentor_id!r} does not offer {service.slug!r} or is not bookable")
    return chosen
