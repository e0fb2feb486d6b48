"""Queries and row-level locks. Services call these; nothing outside syncd.store writes SQL."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session, selectinload

from syncd.store.models import (
    LIVE_BOOKING_STATUSES,
    Booking,
    BusyInterval,
    Calendar,
    DateOverride,
    Mentor,
    OutboxItem,
    QuotaConsumption,
    QuotaGrant,
    QuotaRefund,
    Service,
    ServiceMentor,
    Student,
    WeeklyHours,
)


def get_mentor(session: Session, mentor_id: str) -> Mentor | None:
    return session.get(Mentor, mentor_id)


def list_mentors(session: Session) -> Sequence[Mentor]:
    return session.scalars(select(Mentor).order_by(Mentor.id)).all()


def get_service(session: Session, slug: str) -> Service | None:
    return session.get(Service, slug)


def list_services(session: Session) -> Sequence[Service]:
    return session.scalars(select(Service).order_by(Service.slug)).all()


def get_student(session: Session, student_id: str) -> Student | None:
    return session.get(Student, student_id)


def get_booking(session: Session, booking_id: str) -> Booking | None:
    return session.get(Booking, booking_id)


def replace_weekly_hours(session: Session, mentor: Mentor, rows: Iterable[WeeklyHours]) -> None:
    session.execute(delete(WeeklyHours).where(WeeklyHours.mentor_id == mentor.id))
    session.add_all(rows)


def replace_override(session: Session, mentor: Mentor, rows: Iterable[DateOverride]) -> None:
    days = {row.day for row in rows}
    session.execute(
        delete(DateOverride).where(DateOverride.mentor_id == mentor.id, DateOverride.day.in_(days))
    )
    session.add_all(rows)


def assign_mentors(session: Session, service: Service, mentor_ids: Iterable[str]) -> None:
    existing = set(mentor_ids_for_service(session, service.slug))
    for mentor_id in mentor_ids:
        if mentor_id not in existing:
            session.add(ServiceMentor(service_slug=service.slug, mentor_id=mentor_id))
            existing.add(mentor_id)


def mentor_ids_for_service(session: Session, slug: str) -> list[str]:
    query = select(ServiceMentor.mentor_id).where(ServiceMentor.service_slug == slug)
    return sorted(session.scalars(query).all())


def bookable_mentors(session: Session, slug: str) -> Sequence[Mentor]:
    query = (
        select(Mentor)
        .join(ServiceMentor, ServiceMentor.mentor_id == Mentor.id)
        .where(ServiceMentor.service_slug == slug, Mentor.status.in_(("active", "unlisted")))
        .order_by(Mentor.id)
        # The slot engine reads every mentor's hours and overrides: two queries, not two each.
        .options(selectinload(Mentor.weekly_hours), selectinload(Mentor.overrides))
    )
    return session.scalars(query).all()


def calendar_busy(
    session: Session, mentor_ids: Sequence[str], start: datetime, end: datetime
) -> dict[str, list[tuple[datetime, datetime]]]:
    """Busy intervals from blocking calendars overlapping [start, end), per mentor.

    Rows that are syncd's own booking events are skipped: the booking itself counts instead.
    """
    query = (
        select(Calendar.mentor_id, BusyInterval.start, BusyInterval.end)
        .join(Calendar, Calendar.id == BusyInterval.calendar_id)
        .where(
            Calendar.mentor_id.in_(mentor_ids),
            Calendar.blocks_time.is_(True),
            BusyInterval.booking_id.is_(None),
            BusyInterval.start < end,
            BusyInterval.end > start,
        )
    )
    result: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for mentor_id, busy_start, busy_end in session.execute(query):
        result[mentor_id].append((busy_start, busy_end))
    return result


def live_bookings_of_mentors(
    session: Session, mentor_ids: Sequence[str], start: datetime, end: datetime
) -> Sequence[Booking]:
    """Live bookings whose buffered range overlaps [start, end)."""
    query = select(Booking).where(
        Booking.mentor_id.in_(mentor_ids),
        Booking.status.in_(LIVE_BOOKING_STATUSES),
        Booking.block_start < end,
        Booking.block_end > start,
    )
    return session.scalars(query).all()


def lock_mentor(session: Session, mentor_id: str) -> Mentor | None:
    """Serialise bookings of one mentor (PostgreSQL row lock; SQLite holds the write lock)."""
    query = select(Mentor).where(Mentor.id == mentor_id).with_for_update()
    return session.scalars(query).one_or_none()


def lock_student(session: Session, student_id: str) -> Student | None:
    """Serialise quota spending of one student across mentors."""
    query = select(Student).where(Student.id == student_id).with_for_update()
    return session.scalars(query).one_or_none()


def lock_booking(session: Session, booking_id: str) -> Booking | None:
    query = select(Booking).where(Booking.id == booking_id).with_for_update()
    return session.scalars(query).one_or_none()


def bookings(
    session: Session,
    *,
    student_id: str | None = None,
    mentor_id: str | None = None,
    after: datetime | None = None,
    live_only: bool = False,
) -> Sequence[Booking]:
    query = select(Booking).order_by(Booking.start, Booking.id)
    if student_id is not None:
        query = query.where(Booking.student_id == student_id)
    if mentor_id is not None:
        query = query.where(Booking.mentor_id == mentor_id)
    if after is not None:
        query = query.where(Booking.end > after)
    if live_only:
        query = query.where(Booking.status == "confirmed")
    return session.scalars(query).all()


def count_upcoming(session: Session, student_id: str, slug: str, now: datetime) -> int:
    query = select(func.count(Booking.id)).where(
        Booking.student_id == student_id,
        Booking.service_slug == slug,
        Booking.status == "confirmed",
        Booking.start > now,
    )
    return int(session.scalar(query) or 0)


def grants_for(
    session: Session, student_id: str, service: Service | None = None
) -> list[QuotaGrant]:
    """The student's grants, all of them or those covering one service."""
    query = select(QuotaGrant).where(QuotaGrant.student_id == student_id).order_by(QuotaGrant.id)
    if service is not None:
        scope = [QuotaGrant.service_slug == service.slug]
        if service.service_group:
            scope.append(QuotaGrant.service_group == service.service_group)
        query = query.where(or_(*scope))
    return list(session.scalars(query).all())


def unrefunded_consumptions(
    session: Session, grant_ids: Sequence[int]
) -> Sequence[QuotaConsumption]:
    refunded = select(QuotaRefund.consumption_id)
    query = select(QuotaConsumption).where(
        QuotaConsumption.grant_id.in_(grant_ids), QuotaConsumption.id.not_in(refunded)
    )
    return session.scalars(query).all()


def booking_consumption(session: Session, booking_id: str) -> QuotaConsumption | None:
    """The booking's charge that has not been refunded, if any."""
    refunded = select(QuotaRefund.consumption_id)
    query = select(QuotaConsumption).where(
        QuotaConsumption.booking_id == booking_id, QuotaConsumption.id.not_in(refunded)
    )
    return session.scalars(query).first()


def add_outbox(
    session: Session, kind: str, booking_id: str | None, payload: dict[str, object]
) -> None:
    session.add(OutboxItem(kind=kind, booking_id=booking_id, payload=payload))


def outbox_items(session: Session, booking_id: str | None = None) -> Sequence[OutboxItem]:
    query = select(OutboxItem).order_by(OutboxItem.id)
    if booking_id is not None:
        query = query.where(OutboxItem.booking_id == booking_id)
    return session.scalars(query).all()


def booking_by_idempotency_key(session: Session, key: str) -> Booking | None:
    return session.scalars(select(Booking).where(Booking.idempotency_key == key)).first()


def complete_ended_bookings(session: Session, now: datetime) -> int:
    ended = session.scalars(
        select(Booking).where(Booking.status == "confirmed", Booking.end <= now)
    ).all()
    for booking in ended:
        booking.status, booking.updated_at = "completed", now
    return len(ended)
