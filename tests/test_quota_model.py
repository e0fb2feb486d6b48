"""Random sequences of grant / book / cancel, checked against a deliberately simple model.

The model knows nothing of periods or SQL: a list of grants with a size (None = unlimited)
and an expiry, and the set of live bookings charged to each. It spends the limited grant that
expires first, then an unlimited one, and refunds exactly what a cancelled booking spent.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from syncd import directory, quotas
from syncd.booking import BookingRequest, BookingService
from syncd.errors import BookingRefused
from syncd.store import repo
from syncd.store.db import Database

NOW = datetime(2027, 3, 1, 0, tzinfo=UTC)
TODAY = date(2027, 3, 1)
EXAMPLES = int(os.environ.get("SYNCD_HYPOTHESIS_EXAMPLES", "100"))


@dataclass
class ModelGrant:
    grant_id: int
    size: int | None
    expires: date | None
    spent: set[str] = field(default_factory=set)

    def left(self) -> int | None:
        return None if self.size is None else self.size - len(self.spent)


class QuotaLedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.folder = tempfile.TemporaryDirectory()
        self.db = Database(f"sqlite:///{self.folder.name}/model.db")
        self.db.upgrade()
        with self.db.write_session() as session:
            directory.add_mentor(
                session, "ana", name="Ana", email="ana@example.org", timezone="UTC"
            )
            directory.set_weekly_hours(session, "ana", ["daily 00:00-24:00"])
            directory.add_service(
                session, "intro", name="Intro", duration=60, step=60, horizon_days=60
            )
            directory.assign_service(session, "intro", ["ana"])
            directory.add_student(
                session, "stu", name="Stu", email="stu@example.org", timezone="UTC"
            )
        self.service = BookingService(self.db)
        self.grants: list[ModelGrant] = []
        self.live: dict[str, ModelGrant] = {}  # booking id -> grant it spent
        self.next_hour = 1

    def teardown(self) -> None:
        self.db.dispose()
        self.folder.cleanup()

    @rule(
        size=st.one_of(st.none(), st.integers(0, 3)),
        expiry_days=st.one_of(st.none(), st.integers(40, 90)),
    )
    def grant(self, size: int | None, expiry_days: int | None) -> None:
        expires = TODAY + timedelta(days=expiry_days) if expiry_days is not None else None
        with self.db.write_session() as session:
            row = quotas.grant(
                session,
                directory.require_student(session, "stu"),
                service=directory.require_service(session, "intro"),
                sessions=size,
                expires=expires,
                today=TODAY,
            )
            self.grants.append(ModelGrant(row.id, size, expires))

    def expected_grant(self) -> ModelGrant | None:
        limited = [g for g in self.grants if g.size is not None and (g.left() or 0) > 0]
        if limited:
            return min(limited, key=lambda g: (g.expires or date.max, g.grant_id))
        unlimited = [g for g in self.grants if g.size is None]
        return min(unlimited, key=lambda g: g.grant_id) if unlimited else None

    @rule()
    def book(self) -> None:
        start = NOW + timedelta(hours=self.next_hour)  # every booking gets a fresh free hour
        self.next_hour += 2
        expected = self.expected_grant()
        try:
            booking = self.service.book(BookingRequest("intro", "ana", "stu", start), now=NOW)
        except BookingRefused as refused:
            assert expected is None, f"refused ({refused}) but the model would charge {expected}"
            assert refused.reason == "quota_exhausted"
            return
        assert expected is not None, "booked although the model has nothing left"
        with self.db.session() as session:
            consumption = repo.booking_consumption(session, booking.id)
            assert consumption is not None
            assert consumption.grant_id == expected.grant_id
        expected.spent.add(booking.id)
        self.live[booking.id] = expected

    @precondition(lambda self: bool(self.live))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        booking_id = data.draw(st.sampled_from(sorted(self.live)))
        result = self.service.cancel(booking_id, by="admin", reason=None, now=NOW)
        assert result.refunded
        self.live.pop(booking_id).spent.discard(booking_id)

    @invariant()
    def balance_matches(self) -> None:
        if not self.grants:
            return
        with self.db.session() as session:
            student = directory.require_student(session, "stu")
            rows = quotas.summary(session, student, repo.list_services(session), TODAY)
        unlimited = any(g.size is None for g in self.grants)
        expected_left = None if unlimited else sum(g.left() or 0 for g in self.grants)
        assert rows[0].remaining == expected_left
        assert rows[0].used == sum(len(g.spent) for g in self.grants)


QuotaLedgerMachine.TestCase.settings = settings(
    max_examples=max(20, EXAMPLES // 5),
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestQuotaLedger = QuotaLedgerMachine.TestCase
