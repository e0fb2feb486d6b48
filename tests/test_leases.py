"""Leases on calendars and outbox rows, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from syncd.leases import AlreadyRunning, SingleInstanceLock, lock_single_instance, sqlite_lock_path
from syncd.store import leases
from syncd.store.db import Database
from syncd.store.leases import Backoff
from syncd.store.models import Calendar, CalendarAccount, Mentor, OutboxItem

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)


def _mentor(db: Database) -> None:
    with db.write_session() as session:
        session.add(Mentor(id="m1", name="Ada", email="ada@example.org", timezone="UTC"))


def _calendars(db: Database, count: int, **fields: object) -> list[int]:
    with db.write_session() as session:
        rows = [
            Calendar(mentor_id="m1", provider="caldav", remote_id=f"cal-{i}-{random.random()}")
            for i in range(count)
        ]
        for row in rows:
            for name, value in fields.items():
                setattr(row, name, value)
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def _claim(db: Database, owner: str, now: datetime = NOW, limit: int = 100) -> set[int]:
    with db.write_session() as session:
        return {c.id for c in leases.claim_due_calendars(session, owner, now, LEASE, limit)}


def _calendar(db: Database, calendar_id: int) -> Calendar:
    with db.session() as session:
        row = session.get(Calendar, calendar_id)
        assert row is not None
        return row


# -- calendars --------------------------------------------------------------------------------


def test_claims_only_due_calendars_not_waiting_for_reconnect(db: Database) -> None:
    _mentor(db)
    never_synced = _calendars(db, 1)
    overdue = _calendars(db, 1, next_sync_at=NOW - timedelta(seconds=1))
    _calendars(db, 1, next_sync_at=NOW + timedelta(seconds=1))
    _calendars(db, 1, needs_reconnect=True)
    with db.write_session() as session:
        account = CalendarAccount(mentor_id="m1", provider="google", needs_reconnect=True)
        session.add(account)
        session.flush()
        account_id = account.id
    _calendars(db, 1, account_id=account_id)

    claimed = _claim(db, "a")

    assert claimed == set(never_synced + overdue)
    row = _calendar(db, never_synced[0])
    assert (row.lease_owner, row.lease_expires) == ("a", NOW + LEASE)


def test_two_owners_never_claim_the_same_calendar(db: Database) -> None:
    _mentor(db)
    ids = _calendars(db, 5)

    first = _claim(db, "a", limit=3)
    second = _claim(db, "b", limit=3)
    third = _claim(db, "c", limit=3)

    assert len(first) == 3 and len(second) == 2
    assert first.isdisjoint(second)
    assert first | second == set(ids)
    assert third == set()


def test_an_expired_lease_is_taken_over_and_the_old_owner_cannot_release(db: Database) -> None:
    _mentor(db)
    (calendar_id,) = _calendars(db, 1)
    assert _claim(db, "a") == {calendar_id}

    assert _claim(db, "b", now=NOW + LEASE - timedelta(seconds=1)) == set()
    later = NOW + LEASE + timedelta(seconds=1)
    assert _claim(db, "b", now=later) == {calendar_id}

    with db.write_session() as session:
        assert not leases.release_calendar(session, calendar_id, "a", success=True, now=later)
    assert _calendar(db, calendar_id).lease_owner == "b"
    with db.write_session() as session:
        assert leases.release_calendar(session, calendar_id, "b", success=True, now=later)
    assert _calendar(db, calendar_id).lease_owner is None


def test_success_schedules_the_next_pull_one_interval_later_with_jitter(db: Database) -> None:
    _mentor(db)
    (calendar_id,) = _calendars(db, 1, sync_interval_s=300, consecutive_failures=3)
    _claim(db, "a")
    with db.write_session() as session:
        leases.release_calendar(session, calendar_id, "a", success=True, now=NOW)

    row = _calendar(db, calendar_id)
    assert row.next_sync_at is not None
    assert NOW + timedelta(seconds=270) <= row.next_sync_at <= NOW + timedelta(seconds=330)
    assert (row.consecutive_failures, row.last_success, row.last_error) == (0, NOW, None)
    assert (row.lease_owner, row.lease_expires) == (None, None)


def test_failures_back_off_exponentially(db: Database) -> None:
    _mentor(db)
    (calendar_id,) = _calendars(db, 1, sync_interval_s=60)
    no_jitter = Backoff(cap=timedelta(hours=1), jitter=0.0)
    now = NOW
    delays = []
    for _ in range(4):
        assert _claim(db, "a", now=now) == {calendar_id}
        with db.write_session() as session:
            leases.release_calendar(
                session, calendar_id, "a", success=False, now=now, error="boom",
                backoff=no_jitter,
            )  # fmt: skip
        row = _calendar(db, calendar_id)
        assert row.next_sync_at is not None
        delays.append((row.next_sync_at - now).total_seconds())
        now = row.next_sync_at

    assert delays == [60, 120, 240, 480]
    assert (row.consecutive_failures, row.last_error) == (4, "boom")


def test_backoff_is_capped_and_jitter_stays_within_bounds() -> None:
    backoff = Backoff(cap=timedelta(minutes=10), jitter=0.2)
    rng = random.Random(7)
    for failures in range(0, 80):
        delay = backoff.after_failures(timedelta(seconds=30), failures, rng).total_seconds()
        expected = min(30 * 2**failures, 600)
        assert expected * 0.8 <= delay <= expected * 1.2


# -- outbox -----------------------------------------------------------------------------------


def _outbox(db: Database, count: int, **fields: object) -> list[int]:
    with db.write_session() as session:
        rows = [OutboxItem(kind="invite", payload={}, next_attempt_at=NOW) for _ in range(count)]
        for row in rows:
            for name, value in fields.items():
                setattr(row, name, value)
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def _claim_outbox(db: Database, owner: str, now: datetime = NOW, limit: int = 100) -> set[int]:
    with db.write_session() as session:
        return {i.id for i in leases.claim_due_outbox(session, owner, now, LEASE, limit)}


def _item(db: Database, item_id: int) -> OutboxItem:
    with db.session() as session:
        row = session.get(OutboxItem, item_id)
        assert row is not None
        return row


def test_outbox_claims_due_pending_rows_once(db: Database) -> None:
    due = _outbox(db, 3)
    _outbox(db, 1, next_attempt_at=NOW + timedelta(seconds=1))
    _outbox(db, 1, status="done")

    first = _claim_outbox(db, "a", limit=2)
    second = _claim_outbox(db, "b")

    assert first.isdisjoint(second) and first | second == set(due)
    assert all(_item(db, i).attempts == 1 for i in due)


def test_outbox_finish_and_expired_lease_takeover(db: Database) -> None:
    (item_id,) = _outbox(db, 1)
    _claim_outbox(db, "a")
    later = NOW + LEASE + timedelta(seconds=1)
    assert _claim_outbox(db, "b", now=later) == {item_id}

    with db.write_session() as session:
        assert not leases.finish_outbox(session, item_id, "a", later)
        assert leases.finish_outbox(session, item_id, "b", later)
    row = _item(db, item_id)
    assert (row.status, row.done_at, row.lease_owner, row.attempts) == ("done", later, None, 2)


def test_outbox_failure_retries_with_backoff_then_gives_up(db: Database) -> None:
    (item_id,) = _outbox(db, 1)
    no_jitter = Backoff(cap=timedelta(hours=1), jitter=0.0)
    now = NOW
    waits = []
    for _ in range(3):
        assert _claim_outbox(db, "a", now=now) == {item_id}
        with db.write_session() as session:
            leases.fail_outbox(
                session, item_id, "a", now, "smtp down", False, max_attempts=3, backoff=no_jitter
            )
        row = _item(db, item_id)
        waits.append((row.next_attempt_at - now).total_seconds())
        now = row.next_attempt_at

    assert waits[:2] == [30, 60]
    assert (row.status, row.attempts, row.last_error) == ("failed", 3, "smtp down")
    assert _claim_outbox(db, "a", now=now + timedelta(days=1)) == set()


def test_outbox_permanent_failure_stops_at_once(db: Database) -> None:
    (item_id,) = _outbox(db, 1)
    _claim_outbox(db, "a")
    with db.write_session() as session:
        assert leases.fail_outbox(session, item_id, "a", NOW, "bad address", True)
        assert not leases.fail_outbox(session, item_id, "b", NOW, "not mine", False)
    assert (_item(db, item_id).status, _item(db, item_id).last_error) == ("failed", "bad address")


def test_release_all_frees_only_the_owners_leases(db: Database) -> None:
    _mentor(db)
    mine = _calendars(db, 2)
    _claim(db, "a")
    theirs = _calendars(db, 1)
    _claim(db, "b")
    (item_id,) = _outbox(db, 1)
    _claim_outbox(db, "a")

    with db.write_session() as session:
        assert leases.release_all(session, "a") == 3

    assert all(_calendar(db, i).lease_owner is None for i in mine)
    assert _calendar(db, theirs[0]).lease_owner == "b"
    assert _item(db, item_id).lease_owner is None


# -- PostgreSQL: SKIP LOCKED -----------------------------------------------------------------


@pytest.mark.postgres
def test_concurrent_claims_on_postgresql_get_disjoint_sets(postgres_schema_url: str) -> None:
    db = Database(postgres_schema_url)
    try:
        db.upgrade()
        _mentor(db)
        ids = _calendars(db, 10)
        # Both transactions stay open until each has claimed: without SKIP LOCKED the second
        # would block on the first's row locks and the barrier would time out.
        barrier = threading.Barrier(2, timeout=10)
        results: dict[str, set[int]] = {}

        def claim(owner: str) -> None:
            with db.write_session() as session:
                claimed = leases.claim_due_calendars(session, owner, NOW, LEASE, 5)
                results[owner] = {c.id for c in claimed}
                barrier.wait()

        threads = [threading.Thread(target=claim, args=(owner,)) for owner in ("a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(15)

        assert set(results) == {"a", "b"}
        assert results["a"].isdisjoint(results["b"])
        assert results["a"] | results["b"] == set(ids)
    finally:
        db.dispose()


# -- SQLite: one daemon per database file -----------------------------------------------------


def test_sqlite_lock_path_is_next_to_the_database(tmp_path: Path) -> None:
    assert sqlite_lock_path(f"sqlite:///{tmp_path}/s.db") == Path(f"{tmp_path}/s.db.lock")
    assert sqlite_lock_path("sqlite://") is None
    assert sqlite_lock_path("postgresql+psycopg://u@127.0.0.1/x") is None


def test_a_second_lock_on_the_same_sqlite_file_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    first = lock_single_instance(url)
    assert first is not None
    try:
        with pytest.raises(AlreadyRunning, match=r"already uses this SQLite database.*PostgreSQL"):
            lock_single_instance(url)
    finally:
        first.release()
    with SingleInstanceLock(tmp_path / "s.db.lock"):
        pass  # free again once released


def test_postgresql_needs_no_single_instance_lock() -> None:
    assert lock_single_instance("postgresql+psycopg://u@127.0.0.1:5432/x") is None


def test_claim_returns_calendars_leased_to_the_owner_in_the_database(db: Database) -> None:
    _mentor(db)
    _calendars(db, 2)
    _claim(db, "a")
    with db.session() as session:
        owners = set(session.scalars(select(Calendar.lease_owner)))
    assert owners == {"a"}
