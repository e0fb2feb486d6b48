"""The quota ledger: grants, consumptions linked to bookings, refunds linked to cancellations.

Nothing here is a counter: every balance is derived from the ledger rows. Renewing grants give
each period its own allowance; a period is found from the anchor date in the student's zone,
and a session is charged to the period that contains its start (student's local date).
"""

from __future__ import annotations

import calendar
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy.orm import Session

from syncd.errors import BookingRefused, UserError
from syncd.store import repo
from syncd.store.models import Booking, QuotaConsumption, QuotaGrant, QuotaRefund, Service, Student
from syncd.timeutil import zone

RENEWALS = ("none", "weekly", "monthly", "yearly")


def add_months(day: date, months: int) -> date:
    """`day` moved by whole months, clamped to the month's last day (Jan 31 + 1 = Feb 28/29)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(day.day, last))


def period_start(grant: QuotaGrant, index: int) -> date:
    """Start of the grant's `index`-th period, always computed from the anchor (no drift)."""
    if grant.renewal == "weekly":
        return grant.anchor + timedelta(weeks=index)
    if grant.renewal == "monthly":
        return add_months(grant.anchor, index)
    if grant.renewal == "yearly":
        return add_months(grant.anchor, 12 * index)
    return grant.anchor


def period_index(grant: QuotaGrant, day: date) -> int | None:
    """Which period contains the local date `day`; None before the anchor."""
    if day < grant.anchor:
        return None
    if grant.renewal == "none":
        return 0
    if grant.renewal == "weekly":
        return (day - grant.anchor).days // 7
    months = (day.year - grant.anchor.year) * 12 + day.month - grant.anchor.month
    index = months // 12 if grant.renewal == "yearly" else months
    while index > 0 and period_start(grant, index) > day:
        index -= 1
    while period_start(grant, index + 1) <= day:
        index += 1
    return index


def period_end(grant: QuotaGrant, index: int) -> date | None:
    """First date after the period (the renewal date); None for a grant that never renews."""
    return None if grant.renewal == "none" else period_start(grant, index + 1)


def applies_on(grant: QuotaGrant, day: date) -> bool:
    return day >= grant.anchor and (grant.expires is None or day <= grant.expires)


@dataclass(frozen=True)
class GrantBalance:
    grant: QuotaGrant
    period_start: date
    renews_on: date | None
    used: int
    remaining: int | None  # None: unlimited


def _used_by_period(
    session: Session, grants: Sequence[QuotaGrant]
) -> Counter[tuple[int, date | None]]:
    rows = repo.unrefunded_consumptions(session, [grant.id for grant in grants])
    return Counter((row.grant_id, row.period_start) for row in rows)


def grant_balance(
    grant: QuotaGrant, day: date, used: Counter[tuple[int, date | None]]
) -> GrantBalance | None:
    """The grant's standing in the period that contains `day`; None if it does not apply then."""
    if not applies_on(grant, day):
        return None
    index = period_index(grant, day)
    assert index is not None  # applies_on checked the anchor
    start = period_start(grant, index)
    used_now = used[(grant.id, start)]
    return GrantBalance(
        grant=grant,
        period_start=start,
        renews_on=period_end(grant, index),
        used=used_now,
        remaining=None if grant.sessions is None else _remaining(grant, index, used),
    )


def _remaining(grant: QuotaGrant, index: int, used: Counter[tuple[int, date | None]]) -> int:
    assert grant.sessions is not None
    if not grant.carry_over or grant.renewal == "none":
        return max(0, grant.sessions - used[(grant.id, period_start(grant, index))])
    # Carry-over: everything granted up to this period minus everything charged to it so far.
    granted = grant.sessions * (index + 1)
    spent = sum(used[(grant.id, period_start(grant, k))] for k in range(index + 1))
    return max(0, granted - spent)


def _spend_order(balance: GrantBalance) -> tuple[date, int]:
    """Units that vanish first are spent first: expiry date or, without carry-over, renewal."""
    grant = balance.grant
    ends = [grant.expires or date.max]
    if balance.renews_on is not None and not grant.carry_over:
        ends.append(balance.renews_on - timedelta(days=1))
    return (min(ends), grant.id)


def choose_grant(
    session: Session, student: Student, service: Service, start: datetime
) -> GrantBalance:
    """The grant a session starting at `start` is charged to, or BookingRefused saying why."""
    day = start.astimezone(zone(student.timezone)).date()
    grants = repo.grants_for(session, student.id, service)
    used = _used_by_period(session, grants)
    balances = [b for b in (grant_balance(g, day, used) for g in grants) if b is not None]
    limited = sorted((b for b in balances if b.remaining), key=_spend_order)
    if limited:
        return limited[0]
    unlimited = [b for b in balances if b.remaining is None]
    if unlimited:
        return min(unlimited, key=lambda b: b.grant.id)
    raise _exhausted(service, day, balances, grants)


def _exhausted(
    service: Service, day: date, balances: Sequence[GrantBalance], grants: Sequence[QuotaGrant]
) -> BookingRefused:
    renewals = sorted(b.renews_on for b in balances if b.renews_on is not None)
    if renewals:
        return BookingRefused(
            "quota_exhausted",
            f"quota exhausted: no {service.slug} sessions left for the period of {day}; "
            f"it renews on {renewals[0]}",
        )
    if not grants:
        return BookingRefused(
            "quota_exhausted",
            f"quota exhausted: no sessions granted for {service.slug}; more must be bought",
        )
    future = sorted(g.anchor for g in grants if g.anchor > day)
    if future:
        return BookingRefused(
            "quota_exhausted",
            f"quota exhausted: no {service.slug} sessions for {day}; a grant starts on {future[0]}",
        )
    return BookingRefused(
        "quota_exhausted", f"quota exhausted: no {service.slug} sessions left; more must be bought"
    )


def charge(
    session: Session, student: Student, service: Service, booking: Booking
) -> QuotaConsumption:
    balance = choose_grant(session, student, service, booking.start)
    consumption = QuotaConsumption(
        grant_id=balance.grant.id, booking_id=booking.id, period_start=balance.period_start
    )
    session.add(consumption)
    session.flush()
    return consumption


def refund(session: Session, booking: Booking, reason: str) -> bool:
    """Refund exactly this booking's charge; False when there is nothing to refund."""
    consumption = repo.booking_consumption(session, booking.id)
    if consumption is None:
        return False
    session.add(QuotaRefund(consumption_id=consumption.id, booking_id=booking.id, reason=reason))
    session.flush()
    return True


def grant(
    session: Session,
    student: Student,
    *,
    service: Service | None = None,
    group: str | None = None,
    sessions: int | None,
    renewal: str = "none",
    anchor: date | None = None,
    expires: date | None = None,
    carry_over: bool = False,
    today: date,
) -> QuotaGrant:
    """Record a new grant. `sessions=None` means unlimited."""
    if (service is None) == (group is None):
        raise UserError("a grant covers exactly one service or one service group")
    if renewal not in RENEWALS:
        raise UserError(f"invalid renewal {renewal!r}: one of {', '.join(RENEWALS)}")
    if sessions is not None and sessions < 0:
        raise UserError("sessions cannot be negative")
    start = anchor or today
    if expires is not None and expires < start:
        raise UserError(f"expiry {expires} is before the grant starts ({start})")
    row = QuotaGrant(
        student_id=student.id,
        service_slug=service.slug if service else None,
        service_group=group,
        sessions=sessions,
        renewal=renewal,
        anchor=start,
        expires=expires,
        carry_over=carry_over,
    )
    session.add(row)
    session.flush()
    return row


@dataclass(frozen=True)
class ServiceQuota:
    """What `syncd quota show` reports for one service."""

    service: str
    unlimited: bool
    remaining: int | None
    used: int
    period_start: date | None
    next_renewal: date | None
    expires: date | None


def summary(
    session: Session, student: Student, services: Sequence[Service], today: date
) -> list[ServiceQuota]:
    """Per service the student holds grants for: remaining this period, used, renewal, expiry."""
    result = []
    for service in services:
        grants = repo.grants_for(session, student.id, service)
        if grants:
            result.append(_service_quota(session, service, grants, today))
    return result


def _service_quota(
    session: Session, service: Service, grants: Sequence[QuotaGrant], today: date
) -> ServiceQuota:
    used = _used_by_period(session, grants)
    balances = [b for b in (grant_balance(g, today, used) for g in grants) if b is not None]
    unlimited = any(b.remaining is None for b in balances)
    renewals = [b.renews_on for b in balances if b.renews_on is not None]
    expiries = [b.grant.expires for b in balances]
    return ServiceQuota(
        service=service.slug,
        unlimited=unlimited,
        remaining=None if unlimited else sum(b.remaining or 0 for b in balances),
        used=sum(b.used for b in balances),
        period_start=min((b.period_start for b in balances), default=None),
        next_renewal=min(renewals, default=None),
        expires=None if not expiries or None in expiries else max(e for e in expiries if e),
    )
