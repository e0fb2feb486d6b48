"""The booking service: slot re-checks, limits, idempotency, outbox rows, reschedule."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from syncd import directory, quotas
from syncd.booking import BookingRequest, BookingService, mark_past_completed
from syncd.errors import BookingRefused, NotFoundError, UserError
from syncd.store import repo
from syncd.store.db import Database
from syncd.store.models import BusyInterval, Calendar

NOW = datetime(2027, 2, 26, 12, tzinfo=UTC)


@pytest.fixture
def funded(world: Database) -> Database:
    with world.write_session() as session:
        for student in ("stu", "kim"):
            quotas.grant(
                session,
                directory.require_student(session, student),
                service=directory.require_service(session, "intro"),
                sessions=None,
                today=date(2027, 2, 1),
            )
    return world


def request(
    start: str, mentor: str = "ana", student: str = "kim", key: str | None = None
) -> BookingRequest:
    return BookingRequest("intro", mentor, student, datetime.fromisoformat(start), key)


def refusal(db: Database, req: BookingRequest, now: datetime = NOW) -> str:
    with pytest.raises(BookingRefused) as refused:
        BookingService(db).book(req, now=now)
    return refused.value.reason


def test_booking_writes_outbox_rows_for_write_back_and_invite(funded: Database) -> None:
    booking = BookingService(funded).book(request("2027-03-01T09:00:00+01:00"), now=NOW)
    assert booking.start == datetime(2027, 3, 1, 8, tzinfo=UTC)
    assert booking.block_end == datetime(2027, 3, 1, 9, 15, tzinfo=UTC)
    with funded.session() as session:
        kinds = [(item.kind, item.payload) for item in repo.outbox_items(session, booking.id)]
    assert kinds == [
        ("calendar_upsert", {"sequence": 0}),
        ("invite", {"method": "REQUEST", "sequence": 0}),
    ]


def test_buffers_protect_both_sides(funded: Database) -> None:
    with funded.write_session() as session:
        directory.add_service(session, "deep", name="Deep dive", duration=30, buffer_before=30)
        directory.assign_service(session, "deep", ["ana"])
        quotas.grant(
            session,
            directory.require_student(session, "kim"),
            service=directory.require_service(session, "deep"),
            sessions=None,
            today=date(2027, 2, 1),
        )
    BookingService(funded).book(
        request("2027-03-01T10:00:00+01:00"), now=NOW
    )  # blocks 09:00-10:15Z
    deep = BookingService(funded)
    too_close = BookingRequest("deep", "ana", "kim", datetime(2027, 3, 1, 10, 30, tzinfo=UTC))
    with pytest.raises(BookingRefused):
        deep.book(too_close, now=NOW)  # its own 30 min buffer before reaches into 10:15
    fits = BookingRequest("deep", "ana", "kim", datetime(2027, 3, 1, 10, 45, tzinfo=UTC))
    assert deep.book(fits, now=NOW).block_start == datetime(2027, 3, 1, 10, 15, tzinfo=UTC)


def test_calendar_busy_time_blocks_but_own_events_do_not_count_twice(funded: Database) -> None:
    with funded.write_session() as session:
        calendar = Calendar(mentor_id="ana", provider="caldav", remote_id="/cal/ana/", name="Work")
        session.add(calendar)
        session.flush()
        session.add(
            BusyInterval(
                calendar_id=calendar.id,
                start=datetime(2027, 3, 1, 10, tzinfo=UTC),
                end=datetime(2027, 3, 1, 11, tzinfo=UTC),
                uid="meeting",
            )
        )
        # An event syncd wrote itself for some booking: the booking counts, not this row.
        session.add(
            BusyInterval(
                calendar_id=calendar.id,
                start=datetime(2027, 3, 1, 13, tzinfo=UTC),
                end=datetime(2027, 3, 1, 14, tzinfo=UTC),
                uid="x",
                booking_id="e" * 32,
            )
        )
    assert refusal(funded, request("2027-03-01T10:30:00Z")) == "slot_unavailable"
    assert (
        refusal(funded, request("2027-03-01T09:50:00Z")) == "slot_unavailable"
    )  # 09:50 is off-step
    assert (
        refusal(funded, request("2027-03-01T09:00:00Z")) == "slot_unavailable"
    )  # buffer after reaches 10:15
    assert (
        BookingService(funded).book(request("2027-03-01T13:00:00Z"), now=NOW).status == "confirmed"
    )


def test_notice_horizon_and_hours_are_rechecked(funded: Database) -> None:
    with funded.write_session() as session:
        service = directory.require_service(session, "intro")
        service.min_notice_min = 24 * 60
    assert refusal(funded, request("2027-02-26T15:00:00+01:00")) == "slot_unavailable"  # notice
    assert refusal(funded, request("2027-03-15T09:00:00+01:00")) == "slot_unavailable"  # horizon
    assert (
        refusal(funded, request("2027-03-01T08:00:00+01:00")) == "slot_unavailable"
    )  # before hours
    assert refusal(funded, request("2027-03-06T10:00:00+01:00")) == "slot_unavailable"  # Saturday


def test_upcoming_limit(funded: Database) -> None:
    with funded.write_session() as session:
        directory.require_service(session, "intro").max_upcoming = 1
    BookingService(funded).book(request("2027-03-01T09:00:00+01:00"), now=NOW)
    assert refusal(funded, request("2027-03-02T09:00:00+01:00")) == "upcoming_limit"
    assert BookingService(funded).book(request("2027-03-02T09:00:00+01:00", student="stu"), now=NOW)


def test_per_day_limit(funded: Database) -> None:
    with funded.write_session() as session:
        directory.require_service(session, "intro").max_per_day = 1
    BookingService(funded).book(request("2027-03-01T09:00:00+01:00"), now=NOW)
    assert (
        refusal(funded, request("2027-03-01T14:00:00+01:00", student="stu")) == "slot_unavailable"
    )
    assert BookingService(funded).book(request("2027-03-02T14:00:00+01:00", student="stu"), now=NOW)


def test_unknown_parties_and_unassigned_mentors(funded: Database) -> None:
    with pytest.raises(NotFoundError):
        BookingService(funded).book(request("2027-03-01T09:00:00+01:00", mentor="nobody"), now=NOW)
    with pytest.raises(NotFoundError):
        BookingService(funded).book(request("2027-03-01T09:00:00+01:00", student="nobody"), now=NOW)
    with funded.write_session() as session:
        directory.add_mentor(session, "cy", name="Cy", email="cy@example.org", timezone="UTC")
        directory.set_weekly_hours(session, "cy", ["mon-fri 08:00-18:00"])
    assert refusal(funded, request("2027-03-01T09:00:00Z", mentor="cy")) == "mentor_not_bookable"


def test_naive_start_is_refused(funded: Database) -> None:
    with pytest.raises(UserError, match="offset"):
        BookingService(funded).book(
            BookingRequest("intro", "ana", "kim", datetime(2027, 3, 1, 9)), now=NOW
        )


def test_idempotency_key_returns_the_same_booking(funded: Database) -> None:
    service = BookingService(funded)
    first = service.book(request("2027-03-01T09:00:00+01:00", key="k-1"), now=NOW)
    again = service.book(request("2027-03-01T09:00:00+01:00", key="k-1"), now=NOW)
    assert again.id == first.id
    assert (
        refusal(funded, request("2027-03-02T09:00:00+01:00", key="k-1")) == "idempotency_conflict"
    )
    with funded.session() as session:
        assert len(repo.bookings(session, student_id="kim")) == 1


def test_live_check_policy(funded: Database) -> None:
    busy = BookingService(funded, live_check=lambda mentor, start, end: False)
    assert refusal_with(busy, request("2027-03-01T09:00:00+01:00")) == "slot_unavailable"
    down = BookingService(funded, live_check=lambda mentor, start, end: None)
    assert refusal_with(down, request("2027-03-01T09:00:00+01:00")) == "calendar_unreachable"
    tolerant = BookingService(
        funded, live_check=lambda mentor, start, end: None, live_check_policy="allow"
    )
    assert tolerant.book(request("2027-03-01T09:00:00+01:00"), now=NOW).status == "confirmed"
    with funded.session() as session:
        assert len(repo.bookings(session)) == 1  # refused attempts left nothing behind


def refusal_with(service: BookingService, req: BookingRequest) -> str:
    with pytest.raises(BookingRefused) as refused:
        service.book(req, now=NOW)
    return refused.value.reason


def test_reschedule_keeps_identity_bumps_sequence_and_frees_the_old_slot(funded: Database) -> None:
    service = BookingService(funded)
    booking = service.book(request("2027-03-01T09:00:00+01:00"), now=NOW)
    moved = service.reschedule(booking.id, datetime(2027, 3, 1, 8, 30, tzinfo=UTC), now=NOW)
    assert (moved.id, moved.sequence, moved.start) == (
        booking.id,
        1,
        datetime(2027, 3, 1, 8, 30, tzinfo=UTC),
    )
    # Moving onto its own old range is fine (the booking does not block itself) ...
    assert (
        service.reschedule(booking.id, datetime(2027, 3, 1, 8, tzinfo=UTC), now=NOW).sequence == 2
    )
    # ... and the time it left is bookable by others.
    other = service.book(request("2027-03-01T09:15:00Z", student="stu"), now=NOW)
    with pytest.raises(BookingRefused):
        service.reschedule(booking.id, datetime(2027, 3, 1, 9, 30, tzinfo=UTC), now=NOW)
    with funded.session() as session:
        kinds = [item.kind for item in repo.outbox_items(session, booking.id)]
    assert kinds.count("calendar_upsert") == 3
    assert other.sequence == 0


def test_cancel_twice_and_after_start(funded: Database) -> None:
    service = BookingService(funded)
    booking = service.book(request("2027-03-01T09:00:00+01:00"), now=NOW)
    with pytest.raises(BookingRefused, match="already started"):
        service.cancel(
            booking.id, by="student", reason=None, now=datetime(2027, 3, 1, 8, 30, tzinfo=UTC)
        )
    result = service.cancel(booking.id, by="mentor", reason="sick", now=NOW)
    assert (result.booking.status, result.booking.cancelled_by, result.booking.sequence) == (
        "cancelled",
        "mentor",
        1,
    )
    with pytest.raises(BookingRefused, match="is cancelled"):
        service.cancel(booking.id, by="admin", reason=None, now=NOW)
    with funded.session() as session:
        kinds = [(i.kind, i.payload.get("method")) for i in repo.outbox_items(session, booking.id)]
    assert kinds[-2:] == [("calendar_delete", None), ("invite", "CANCEL")]


def test_past_bookings_become_completed(funded: Database) -> None:
    booking = BookingService(funded).book(request("2027-03-01T09:00:00+01:00"), now=NOW)
    assert mark_past_completed(funded, datetime(2027, 3, 1, 8, 59, tzinfo=UTC)) == 0
    assert mark_past_completed(funded, datetime(2027, 3, 1, 9, 0, tzinfo=UTC)) == 1
    with funded.session() as session:
        stored = repo.get_booking(session, booking.id)
        assert stored is not None and stored.status == "completed"
    # A completed booking still blocks its time (and its buffers).
    later = NOW - timedelta(days=30)
    assert (
        refusal(funded, request("2027-03-01T09:00:00+01:00", student="stu"), now=later)
        == "slot_unavailable"
    )
