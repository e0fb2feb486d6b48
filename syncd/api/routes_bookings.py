"""Bookings: create (idempotent with a key), read, list, cancel, reschedule.

A booking another principal may not see answers 404, exactly as a missing one, so ids of other
students' bookings cannot be probed.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Header, Query, status

from syncd.api import auth
from syncd.api.auth import CurrentPrincipal, Principal
from syncd.api.context import ApiContext, Context
from syncd.api.schemas import BookingCreate, BookingOut, CancelIn, CancelledOut, RescheduleIn
from syncd.booking import BookingRequest
from syncd.directory import require_mentor, require_student
from syncd.errors import NotFoundError
from syncd.store import repo
from syncd.store.models import Booking

log = logging.getLogger(__name__)
router = APIRouter(tags=["bookings"])


def visible_booking(context: ApiContext, principal: Principal, booking_id: str) -> Booking:
    with context.db.session() as session:
        booking = repo.get_booking(session, booking_id)
    if booking is None or not auth.may_see_booking(
        principal, booking.student_id, booking.mentor_id
    ):
        raise NotFoundError(f"unknown booking {booking_id!r}")
    return booking


@router.post(
    "/bookings",
    status_code=status.HTTP_201_CREATED,
    response_model=BookingOut,
    summary="Book a session",
)
def create_booking(
    context: Context,
    principal: CurrentPrincipal,
    body: BookingCreate,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=200,
            description="Retrying with the same key returns the same booking instead of a second one.",
        ),
    ] = None,
) -> BookingOut:
    auth.require_book_for(principal, body.student)
    request = BookingRequest(body.service, body.mentor, body.student, body.start, idempotency_key)
    booking = context.bookings.book(request, now=context.settings.clock())
    log.info("api: %s booked %s for %s", principal.name, booking.id, booking.student_id)
    return BookingOut.of(booking)


@router.get("/bookings/{booking_id}", response_model=BookingOut, summary="One booking")
def get_booking(context: Context, principal: CurrentPrincipal, booking_id: str) -> BookingOut:
    return BookingOut.of(visible_booking(context, principal, booking_id))


@router.get("/bookings", response_model=list[BookingOut], summary="Bookings of a student or mentor")
def list_bookings(
    context: Context,
    principal: CurrentPrincipal,
    student: Annotated[str | None, Query(description="Only this student's bookings.")] = None,
    mentor: Annotated[str | None, Query(description="Only this mentor's bookings.")] = None,
    upcoming: Annotated[
        bool, Query(description="Only confirmed bookings that have not ended.")
    ] = False,
) -> list[BookingOut]:
    student, mentor = _scope(principal, student, mentor)
    now = context.settings.clock()
    with context.db.session() as session:
        if student is not None:
            require_student(session, student)
        if mentor is not None:
            require_mentor(session, mentor)
        rows = repo.bookings(
            session,
            student_id=student,
            mentor_id=mentor,
            after=now if upcoming else None,
            live_only=upcoming,
        )
    return [BookingOut.of(row) for row in rows]


def _scope(
    principal: Principal, student: str | None, mentor: str | None
) -> tuple[str | None, str | None]:
    """A page link lists only its own bookings, whatever the query asks for."""
    if principal.role == "student":
        auth.require_student_access(principal, student or str(principal.subject_id))
        return principal.subject_id, mentor
    if principal.role == "mentor":
        auth.require_mentor_access(principal, mentor or str(principal.subject_id))
        return student, principal.subject_id
    return student, mentor


@router.post(
    "/bookings/{booking_id}/cancel", response_model=CancelledOut, summary="Cancel a booking"
)
def cancel_booking(
    context: Context, principal: CurrentPrincipal, booking_id: str, body: CancelIn
) -> CancelledOut:
    visible_booking(context, principal, booking_id)
    by = auth.cancel_by(principal, body.by)
    result = context.bookings.cancel(
        booking_id, by=by, reason=body.reason, now=context.settings.clock()
    )
    log.info("api: %s cancelled %s as %s", principal.name, booking_id, by)
    return CancelledOut(**BookingOut.of(result.booking).model_dump(), refunded=result.refunded)


@router.post(
    "/bookings/{booking_id}/reschedule", response_model=BookingOut, summary="Move a booking"
)
def reschedule_booking(
    context: Context, principal: CurrentPrincipal, booking_id: str, body: RescheduleIn
) -> BookingOut:
    visible_booking(context, principal, booking_id)
    auth.require_writer(principal)
    booking = context.bookings.reschedule(booking_id, body.start, now=context.settings.clock())
    log.info("api: %s rescheduled %s", principal.name, booking_id)
    return BookingOut.of(booking)
