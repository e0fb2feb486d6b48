"""Booking, cancelling and rescheduling: each one transaction that cannot double-book.

The mentor row is locked first (PostgreSQL `SELECT ... FOR UPDATE`; SQLite takes the database
write lock at `BEGIN IMMEDIATE`), then the student row, so two bookings of one mentor, or two
spends of one student's quota, run one after the other and each sees the other's result.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from syncd import availability as engine
from syncd import quotas
from syncd.directory import require_service
from syncd.errors import BookingRefused, NotFoundError, UserError
from syncd.identity import new_booking_id
from syncd.slots import load_availability, service_rules
from syncd.store import repo
from syncd.store.db import Database
from syncd.store.models import Booking, Mentor, Service, Student
from syncd.webhooks import webhook_payload

log = logging.getLogger(__name__)

CANCELLERS = ("student", "mentor", "admin")
BOOKABLE_STATUSES = ("active", "unlisted")

# Told after each commit: ("booked" | "cancelled" | "rescheduled", booking id) or
# ("refused", reason code); the daemon counts them and wakes the outbox.
Observer = Callable[[str, str], None]


class LiveCheck(Protocol):
    """Asks the mentor's calendars whether [start, end) is free right now: True free, False
    busy, None the provider could not be asked (then `live_check_policy` decides). `own` is the
    time of the booking's own event, which must not count as busy when it is rescheduled."""

    def __call__(
        self,
        mentor_id: str,
        start: datetime,
        end: datetime,
        own: tuple[datetime, datetime] | None = None,
    ) -> bool | None: ...


@dataclass(frozen=True)
class BookingRequest:
    service: str
    mentor: str
    student: str
    start: datetime
    idempotency_key: str | None = None


@dataclass(frozen=True)
class CancelResult:
    booking: Booking
    refunded: bool


class BookingService:
    def __init__(
        self,
        db: Database,
        *,
        live_check: LiveCheck | None = None,
        live_check_policy: str = "refuse",
        webhooks: bool = False,
        observer: Observer | None = None,
    ) -> None:
        if live_check_policy not in ("refuse", "allow"):
            raise UserError("live check policy must be 'refuse' or 'allow'")
        self.db = db
        self.live_check = live_check
        self.live_check_policy = live_check_policy
        self.webhooks = webhooks
        self.observer = observer

    def _tell(self, event: str, detail: str) -> None:
        if self.observer is not None:
            try:
                self.observer(event, detail)
            except Exception:  # an observer must never undo a committed booking
                log.exception("booking observer failed on %s %s", event, detail)

    def _queue(self, session: Session, booking: Booking, event: str, method: str) -> None:
        """Outbox rows for the calendar and the invite, plus the webhook when configured."""
        kind = "calendar_delete" if method == "CANCEL" else "calendar_upsert"
        repo.add_outbox(session, kind, booking.id, {"sequence": booking.sequence})
        repo.add_outbox(
            session, "invite", booking.id, {"method": method, "sequence": booking.sequence}
        )
        if self.webhooks:
            session.flush()
            body = webhook_payload(event, booking)
            repo.add_outbox(session, "webhook", booking.id, {"event": event, "body": body})

    # -- book ---------------------------------------------------------------------------------

    def book(self, request: BookingRequest, *, now: datetime) -> Booking:
        _require_aware(request.start)
        try:
            with self.db.write_session() as session:
                existing = self._replay(session, request)
                if existing is not None:
                    return existing
                booking = self._book_locked(session, request, now)
        except IntegrityError as error:
            refusal = _integrity_refusal(error)
            self._tell("refused", refusal.reason)
            raise refusal from None
        except BookingRefused as refusal:
            self._tell("refused", refusal.reason)
            raise
        self._tell("booked", booking.id)
        log.info(
            "booked %s: %s with %s at %s",
            booking.id,
            booking.service_slug,
            booking.mentor_id,
            booking.start,
        )
        return booking

    def _replay(self, session: Session, request: BookingRequest) -> Booking | None:
        """The booking an earlier request with the same idempotency key created, if any."""
        if request.idempotency_key is None:
            return None
        earlier = repo.booking_by_idempotency_key(session, request.idempotency_key)
        if earlier is None:
            return None
        same = (earlier.service_slug, earlier.mentor_id, earlier.student_id, earlier.start) == (
            request.service,
            request.mentor,
            request.student,
            request.start,
        )
        if not same:
            raise BookingRefused(
                "idempotency_conflict", "idempotency key already used for another booking"
            )
        return earlier

    def _book_locked(self, session: Session, request: BookingRequest, now: datetime) -> Booking:
        mentor, student, service = _lock_parties(
            session, request.mentor, request.student, request.service
        )
        booking = _new_booking(request, service)
        self._check_slot(session, service, mentor, booking, now)
        _check_upcoming_limit(session, student, service, now)
        session.add(booking)
        session.flush()
        quotas.charge(session, student, service, booking)
        self._queue(session, booking, "booking.created", "REQUEST")
        self._live_check(mentor, booking)
        return booking

    def _check_slot(
        self, session: Session, service: Service, mentor: Mentor, booking: Booking, now: datetime
    ) -> None:
        if mentor.status not in BOOKABLE_STATUSES:
            raise BookingRefused(
                "mentor_not_bookable", f"mentor {mentor.id!r} is not bookable ({mentor.status})"
            )
        if mentor.id not in repo.mentor_ids_for_service(session, service.slug):
            raise BookingRefused(
                "mentor_not_bookable", f"mentor {mentor.id!r} does not offer {service.slug!r}"
            )
        day = timedelta(days=1)
        availability = load_availability(
            session,
            service,
            [mentor],
            booking.start - day,
            booking.start + day,
            ignore_booking=booking.id,
        )[0]
        if not engine.is_bookable(service_rules(service), availability, now, booking.start):
            raise BookingRefused(
                "slot_unavailable",
                f"slot not available: {mentor.id} at {booking.start.isoformat()}",
            )

    def _live_check(
        self, mentor: Mentor, booking: Booking, own: tuple[datetime, datetime] | None = None
    ) -> None:
        if self.live_check is None:
            return
        if own is None:
            free = self.live_check(mentor.id, booking.block_start, booking.block_end)
        else:
            free = self.live_check(mentor.id, booking.block_start, booking.block_end, own)
        if free is False:
            raise BookingRefused(
                "slot_unavailable", "slot not available: the mentor's calendar is busy then"
            )
        if free is None and self.live_check_policy == "refuse":
            raise BookingRefused(
                "calendar_unreachable",
                "slot not confirmed: the mentor's calendar cannot be reached; try again",
            )

    # -- cancel -------------------------------------------------------------------------------

    def cancel(
        self, booking_id: str, *, by: str, reason: str | None, now: datetime
    ) -> CancelResult:
        if by not in CANCELLERS:
            raise UserError(f"--by must be one of {', '.join(CANCELLERS)}")
        with self.db.write_session() as session:
            booking = _lock_booking(session, booking_id)
            if booking.status != "confirmed":
                raise BookingRefused("not_cancellable", f"booking {booking_id} is {booking.status}")
            if by == "student" and booking.start <= now:
                raise BookingRefused("too_late", f"booking {booking_id} has already started")
            service = require_service(session, booking.service_slug)
            refunded = _refund_due(booking, service, by, now) and quotas.refund(
                session, booking, "cancelled"
            )
            booking.status, booking.cancelled_by, booking.cancelled_at = "cancelled", by, now
            booking.cancel_reason = reason
            booking.sequence += 1
            booking.updated_at = now
            self._queue(session, booking, "booking.cancelled", "CANCEL")
        self._tell("cancelled", booking_id)
        log.info("cancelled %s by %s (refunded: %s)", booking_id, by, refunded)
        return CancelResult(booking, refunded)

    # -- reschedule ---------------------------------------------------------------------------

    def reschedule(self, booking_id: str, new_start: datetime, *, now: datetime) -> Booking:
        _require_aware(new_start)
        try:
            with self.db.write_session() as session:
                booking = self._reschedule_locked(session, booking_id, new_start, now)
        except IntegrityError as error:
            raise _integrity_refusal(error) from None
        self._tell("rescheduled", booking_id)
        log.info("rescheduled %s to %s", booking_id, new_start)
        return booking

    def _reschedule_locked(
        self, session: Session, booking_id: str, new_start: datetime, now: datetime
    ) -> Booking:
        booking = _lock_booking(session, booking_id)
        if booking.status != "confirmed":
            raise BookingRefused("not_reschedulable", f"booking {booking_id} is {booking.status}")
        if booking.start <= now:
            raise BookingRefused("too_late", f"booking {booking_id} has already started")
        mentor = repo.get_mentor(session, booking.mentor_id)
        student = repo.get_student(session, booking.student_id)
        service = require_service(session, booking.service_slug)
        assert mentor is not None and student is not None  # foreign keys
        own_event = (booking.start, booking.end)  # still in the mentor's calendar until drained
        _move(booking, service, new_start)
        self._check_slot(session, service, mentor, booking, now)
        # The charge follows the session: the old period gets its unit back, the new one pays.
        quotas.refund(session, booking, "rescheduled")
        quotas.charge(session, student, service, booking)
        booking.sequence += 1
        booking.updated_at = now
        session.flush()
        self._queue(session, booking, "booking.rescheduled", "REQUEST")
        self._live_check(mentor, booking, own=own_event)
        return booking


def _require_aware(start: datetime) -> None:
    if start.tzinfo is None or start.utcoffset() is None:
        raise UserError("the start time needs an offset or Z")


def _lock_parties(
    session: Session, mentor_id: str, student_id: str, slug: str
) -> tuple[Mentor, Student, Service]:
    mentor = repo.lock_mentor(session, mentor_id)
    if mentor is None:
        raise NotFoundError(f"unknown mentor {mentor_id!r}")
    student = repo.lock_student(session, student_id)
    if student is None:
        raise NotFoundError(f"unknown student {student_id!r}")
    return mentor, student, require_service(session, slug)


def _lock_booking(session: Session, booking_id: str) -> Booking:
    """Lock mentor, then student, then the booking: the same order as booking, so no deadlock."""
    found = repo.get_booking(session, booking_id)
    if found is None:
        raise NotFoundError(f"unknown booking {booking_id!r}")
    repo.lock_mentor(session, found.mentor_id)
    repo.lock_student(session, found.student_id)
    booking = repo.lock_booking(session, booking_id)
    assert booking is not None
    session.refresh(booking)
    return booking


def _new_booking(request: BookingRequest, service: Service) -> Booking:
    booking = Booking(
        id=new_booking_id(),
        service_slug=service.slug,
        mentor_id=request.mentor,
        student_id=request.student,
        status="confirmed",
        sequence=0,
        idempotency_key=request.idempotency_key,
    )
    _move(booking, service, request.start)
    return booking


def _move(booking: Booking, service: Service, start: datetime) -> None:
    booking.start = start
    booking.end = start + timedelta(minutes=service.duration_min)
    booking.block_start = start - timedelta(minutes=service.buffer_before_min)
    booking.block_end = booking.end + timedelta(minutes=service.buffer_after_min)


def _check_upcoming_limit(
    session: Session, student: Student, service: Service, now: datetime
) -> None:
    if service.max_upcoming is None:
        return
    if repo.count_upcoming(session, student.id, service.slug, now) >= service.max_upcoming:
        raise BookingRefused(
            "upcoming_limit",
            f"upcoming limit reached: at most {service.max_upcoming} upcoming {service.slug} bookings",
        )


def _refund_due(booking: Booking, service: Service, by: str, now: datetime) -> bool:
    if by in ("mentor", "admin"):
        return True
    return booking.start - now >= timedelta(hours=service.cancel_refund_hours)


def _integrity_refusal(error: IntegrityError) -> BookingRefused:
    text = str(error.orig)
    if "ex_booking_no_overlap" in text:
        return BookingRefused("slot_unavailable", "slot not available: it was just booked")
    if "idempotency_key" in text:
        return BookingRefused(
            "idempotency_conflict", "idempotency key already used; retry to get the booking"
        )
    raise error


def mark_past_completed(db: Database, now: datetime) -> int:
    """Confirmed bookings that have ended become completed; returns how many."""
    with db.write_session() as session:
        return repo.complete_ended_bookings(session, now)


def mark_no_show(db: Database, booking_id: str, *, now: datetime) -> Booking:
    """A no-show keeps its quota charge (no refund)."""
    with db.write_session() as session:
        booking = _lock_booking(session, booking_id)
        if booking.status not in ("confirmed", "completed") or booking.start > now:
            raise BookingRefused(
                "not_no_show", f"booking {booking_id} cannot be marked no-show now"
            )
        booking.status, booking.updated_at = "no_show", now
        return booking
