"""The quota ledger: period arithmetic, spending order, refunds, and a model-based check."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from freezegun import freeze_time

from syncd import quotas
from syncd.booking import BookingRequest, BookingService
from syncd.directory import require_service, require_student
from syncd.errors import BookingRefused
from syncd.store import repo
from syncd.store.db import Database
from syncd.store.models import QuotaGrant


def monthly(anchor: date, renewal: str = "monthly") -> QuotaGrant:
    return QuotaGrant(id=1, anchor=anchor, renewal=renewal, sessions=4, carry_over=False)


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (date(2027, 1, 31), 1, date(2027, 2, 28)),
        (date(2028, 1, 31), 1, date(2028, 2, 29)),
        (date(2027, 1, 31), 2, date(2027, 3, 31)),
        (date(2027, 1, 31), 3, date(2027, 4, 30)),
        (date(2027, 11, 15), 3, date(2028, 2, 15)),
        (date(2028, 2, 29), 12, date(2029, 2, 28)),
    ],
)
def test_add_months_clamps_to_the_last_day(start: date, months: int, expected: date) -> None:
    assert quotas.add_months(start, months) == expected


def test_anchor_on_the_31st_renews_on_the_last_day_of_shorter_months() -> None:
    grant = monthly(date(2027, 1, 31))
    starts = [quotas.period_start(grant, k) for k in range(5)]
    assert starts == [
        date(2027, 1, 31),
        date(2027, 2, 28),
        date(2027, 3, 31),
        date(2027, 4, 30),
        date(2027, 5, 31),
    ]
    assert quotas.period_index(grant, date(2027, 2, 27)) == 0
    assert quotas.period_index(grant, date(2027, 2, 28)) == 1
    assert quotas.period_index(grant, date(2027, 3, 30)) == 1
    assert quotas.period_index(grant, date(2027, 3, 31)) == 2
    assert quotas.period_index(grant, date(2027, 1, 30)) is None


def test_weekly_and_yearly_periods() -> None:
    weekly = monthly(date(2027, 3, 3), "weekly")
    assert quotas.period_index(weekly, date(2027, 3, 9)) == 0
    assert quotas.period_index(weekly, date(2027, 3, 10)) == 1
    assert quotas.period_end(weekly, 1) == date(2027, 3, 17)
    leap = monthly(date(2028, 2, 29), "yearly")
    assert quotas.period_start(leap, 1) == date(2029, 2, 28)
    assert quotas.period_index(leap, date(2029, 2, 27)) == 0
    assert quotas.period_index(leap, date(2029, 2, 28)) == 1
    assert quotas.period_start(leap, 4) == date(2032, 2, 29)


# -- ledger flows through the booking service ---------------------------------------------------

NOW = datetime(2027, 2, 26, 12, tzinfo=UTC)
TODAY = NOW.date()


def grant(db: Database, student: str = "kim", **kwargs: object) -> int:
    with db.write_session() as session:
        row = quotas.grant(
            session,
            require_student(session, student),
            service=require_service(session, "intro"),
            today=NOW.date(),
            **kwargs,  # type: ignore[arg-type]
        )
        return row.id


def book(
    db: Database, start: str, *, student: str = "kim", mentor: str = "ana", now: datetime = NOW
) -> str:
    request = BookingRequest("intro", mentor, student, datetime.fromisoformat(start))
    return BookingService(db).book(request, now=now).id


def charged_grant(db: Database, booking_id: str) -> int | None:
    with db.session() as session:
        consumption = repo.booking_consumption(session, booking_id)
        return consumption.grant_id if consumption else None


def remaining(db: Database, student: str = "kim", today: date = TODAY) -> int | None:
    with db.session() as session:
        pupil = require_student(session, student)
        rows = quotas.summary(session, pupil, repo.list_services(session), today)
    return rows[0].remaining


def test_monthly_allowance_does_not_carry_over(world: Database) -> None:
    grant(world, sessions=2, renewal="monthly", anchor=date(2027, 3, 1))
    book(world, "2027-03-01T09:00:00+01:00")
    book(world, "2027-03-02T09:00:00+01:00")
    with pytest.raises(BookingRefused, match="renews on 2027-04-01"):
        book(world, "2027-03-03T09:00:00+01:00")
    # April has its own two, not three: March's unused units are gone (none were unused here).
    assert remaining(world, today=date(2027, 4, 1)) == 2
    assert remaining(world, today=date(2027, 3, 5)) == 0


def test_unused_units_vanish_unless_carry_over(world: Database) -> None:
    plain = grant(world, sessions=2, renewal="monthly", anchor=date(2027, 2, 1))
    assert remaining(world, today=date(2027, 3, 1)) == 2
    with world.write_session() as session:
        row = session.get(QuotaGrant, plain)
        assert row is not None
        row.carry_over = True
    assert remaining(world, today=date(2027, 3, 1)) == 4


def test_period_follows_the_students_zone(world: Database) -> None:
    # stu lives in Kolkata (+05:30). 2027-02-28T19:00Z is already March 1st there.
    grant(world, student="stu", sessions=1, renewal="monthly", anchor=date(2027, 3, 1))
    with pytest.raises(BookingRefused, match="a grant starts on 2027-03-01"):
        book(world, "2027-02-26T14:00:00Z", student="stu", mentor="ben")
    booking = book(world, "2027-03-01T09:00:00+01:00", student="stu")
    with world.session() as session:
        consumption = repo.booking_consumption(session, booking)
        assert consumption is not None
        assert consumption.period_start == date(2027, 3, 1)


def test_expiry_day_is_inclusive_then_more_must_be_bought(world: Database) -> None:
    grant(world, sessions=5, expires=date(2027, 3, 3))
    book(world, "2027-03-03T16:00:00+01:00")
    with pytest.raises(BookingRefused, match="more must be bought"):
        book(world, "2027-03-04T09:00:00+01:00")


def test_the_grant_that_expires_first_is_spent_first(world: Database) -> None:
    late = grant(world, sessions=5, expires=date(2027, 6, 30))
    early = grant(world, sessions=5, expires=date(2027, 4, 30))
    never = grant(world, sessions=5)
    assert charged_grant(world, book(world, "2027-03-01T09:00:00+01:00")) == early
    # A monthly allowance vanishes at its renewal, so it goes before a pack expiring later.
    monthly_grant = grant(world, sessions=1, renewal="monthly", anchor=date(2027, 2, 15))
    assert charged_grant(world, book(world, "2027-03-02T09:00:00+01:00")) == monthly_grant
    assert charged_grant(world, book(world, "2027-03-03T09:00:00+01:00")) == early
    assert {late, never}.isdisjoint({early, monthly_grant})


def test_a_used_up_grant_never_hides_an_unlimited_one(world: Database) -> None:
    limited = grant(world, sessions=1)
    unlimited = grant(world, sessions=None)
    assert charged_grant(world, book(world, "2027-03-01T09:00:00+01:00")) == limited
    assert charged_grant(world, book(world, "2027-03-01T11:00:00+01:00")) == unlimited
    assert remaining(world) is None


def test_zero_sessions_refuses_with_a_reason(world: Database) -> None:
    grant(world, sessions=0)
    with pytest.raises(BookingRefused) as refusal:
        book(world, "2027-03-01T09:00:00+01:00")
    assert refusal.value.reason == "quota_exhausted"


@pytest.mark.parametrize(
    ("by", "hours_before", "refunded"),
    [("student", 24, True), ("student", 23.9, False), ("mentor", 1, True), ("admin", 0.5, True)],
)
def test_cancel_refund_policy(
    world: Database, by: str, hours_before: float, refunded: bool
) -> None:
    grant(world, sessions=1)
    booking_id = book(world, "2027-03-01T09:00:00+01:00")
    cancel_at = datetime(2027, 3, 1, 8, tzinfo=UTC) - timedelta(hours=hours_before)
    result = BookingService(world).cancel(booking_id, by=by, reason=None, now=cancel_at)
    assert result.refunded is refunded
    assert remaining(world) == (1 if refunded else 0)


def test_refund_is_linked_to_the_cancelled_booking(world: Database) -> None:
    first_grant = grant(world, sessions=1, expires=date(2027, 3, 31))
    second_grant = grant(world, sessions=1)
    first = book(world, "2027-03-01T09:00:00+01:00")
    second = book(world, "2027-03-01T11:00:00+01:00")
    assert (charged_grant(world, first), charged_grant(world, second)) == (
        first_grant,
        second_grant,
    )
    BookingService(world).cancel(second, by="admin", reason=None, now=NOW)
    assert charged_grant(world, second) is None
    assert charged_grant(world, first) == first_grant  # not an arbitrary consumption


@freeze_time("2027-03-01T12:00:00Z")
def test_no_show_keeps_the_charge(world: Database) -> None:
    from syncd.booking import mark_no_show

    grant(world, sessions=1)
    booking_id = book(world, "2027-03-01T09:00:00+01:00", now=NOW)
    mark_no_show(world, booking_id, now=datetime(2027, 3, 1, 12, tzinfo=UTC))
    assert charged_grant(world, booking_id) is not None
    assert remaining(world, today=date(2027, 3, 1)) == 0


def test_reschedule_moves_the_charge_to_the_new_period(world: Database) -> None:
    grant(world, sessions=1, renewal="monthly", anchor=date(2027, 2, 1))
    booking_id = book(world, "2027-02-26T16:00:00+01:00", now=datetime(2027, 2, 26, 8, tzinfo=UTC))
    assert remaining(world, today=date(2027, 2, 26)) == 0
    BookingService(world).reschedule(
        booking_id,
        datetime.fromisoformat("2027-03-01T09:00:00+01:00"),
        now=datetime(2027, 2, 26, 9, tzinfo=UTC),
    )
    assert remaining(world, today=date(2027, 2, 26)) == 1
    assert remaining(world, today=date(2027, 3, 1)) == 0
