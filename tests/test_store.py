from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError, StatementError

from syncd.store.db import Database
from syncd.store.models import Booking, Mentor

NEW_YORK_WINTER = timezone(timedelta(hours=-5))


def test_upgrade_creates_every_table_and_is_idempotent(db: Database) -> None:
    tables = set(inspect(db.engine).get_table_names())
    assert {
        "mentors",
        "bookings",
        "quota_grants",
        "outbox",
        "busy_intervals",
        "calendars",
    } <= tables
    assert not db.needs_upgrade()
    db.upgrade()  # a second run changes nothing
    assert db.current_revision() == db.head_revision()


def test_instants_come_back_aware_utc(db: Database) -> None:
    local = datetime(2027, 3, 8, 9, 0, tzinfo=NEW_YORK_WINTER)
    with db.write_session() as session:
        session.add(Mentor(id="m", name="M", email="m@x.org", timezone="UTC", created_at=local))
    with db.session() as session:
        stored = session.get(Mentor, "m")
        assert stored is not None
        assert stored.created_at == local
        assert stored.created_at.tzinfo is not None
        assert stored.created_at.utcoffset() == timedelta(0)
        assert stored.created_at.hour == 14


def test_naive_datetimes_are_refused(db: Database) -> None:
    with pytest.raises(StatementError, match="naive datetime"), db.write_session() as session:
        session.add(
            Mentor(
                id="m", name="M", email="m@x.org", timezone="UTC", created_at=datetime(2027, 1, 1)
            )
        )


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: object) -> None:
    database = Database(f"sqlite:///{tmp_path}/wal.db")
    try:
        with database.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        database.dispose()


def _booking(booking_id: str, start: datetime, status: str = "confirmed") -> Booking:
    return Booking(
        id=booking_id,
        service_slug="intro",
        mentor_id="ana",
        student_id="stu",
        start=start,
        end=start + timedelta(hours=1),
        block_start=start,
        block_end=start + timedelta(hours=1, minutes=15),
        status=status,
    )


@pytest.mark.postgres
def test_postgres_exclusion_constraint_forbids_overlapping_live_bookings(world: Database) -> None:
    if world.dialect != "postgresql":
        pytest.skip("the exclusion constraint exists on PostgreSQL only")
    start = datetime(2027, 3, 1, 9, tzinfo=UTC)
    with world.write_session() as session:
        session.add(_booking("a" * 32, start))
    # Bypasses the booking service on purpose: the database itself must refuse.
    with (
        pytest.raises(IntegrityError, match="ex_booking_no_overlap"),
        world.write_session() as session,
    ):
        session.add(_booking("b" * 32, start + timedelta(minutes=70)))
    with world.write_session() as session:
        session.add(_booking("c" * 32, start + timedelta(minutes=30), status="cancelled"))
        session.add(_booking("d" * 32, start + timedelta(minutes=75)))  # touching is fine
    with world.session() as session:
        count = session.execute(text("SELECT count(*) FROM bookings")).scalar_one()
    assert count == 3
