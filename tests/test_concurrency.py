"""Concurrent bookings: one slot, one quota unit, many contenders — exactly one wins.

PostgreSQL: threads with their own connections race through the real locking path.
SQLite: separate `syncd book` processes race on one database file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from syncd import directory, quotas
from syncd.booking import BookingRequest, BookingService
from syncd.errors import BookingRefused
from syncd.store import repo
from syncd.store.db import Database

NOW = datetime(2027, 2, 26, 12, tzinfo=UTC)
SLOT = datetime(2027, 3, 1, 8, tzinfo=UTC)  # 09:00 in Madrid, inside ana's hours


def seed(db: Database, *, students: int, sessions: int | None, mentors: int = 1) -> None:
    with db.write_session() as session:
        directory.add_service(session, "intro", name="Intro", duration=60)
        for m in range(mentors):
            directory.add_mentor(
                session, f"m{m}", name=f"M{m}", email=f"m{m}@example.org", timezone="Europe/Madrid"
            )
            directory.set_weekly_hours(session, f"m{m}", ["mon-fri 09:00-17:00"])
        directory.assign_service(session, "intro", [f"m{m}" for m in range(mentors)])
        service = directory.require_service(session, "intro")
        for s in range(students):
            student = directory.add_student(
                session, f"s{s}", name=f"S{s}", email=f"s{s}@example.org", timezone="UTC"
            )
            session.flush()
            quotas.grant(
                session, student, service=service, sessions=sessions, today=date(2026, 1, 1)
            )


def race(db: Database, requests: list[BookingRequest]) -> Counter[str]:
    """Start every request at the same moment; count outcomes by refusal reason."""
    barrier = threading.Barrier(len(requests))
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def attempt(request: BookingRequest) -> None:
        barrier.wait(timeout=30)
        try:
            BookingService(db).book(request, now=NOW)
            outcome = "booked"
        except BookingRefused as refused:
            outcome = refused.reason
        with lock:
            outcomes[outcome] += 1

    threads = [threading.Thread(target=attempt, args=(r,)) for r in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    return outcomes


@pytest.fixture
def pg_db(postgres_schema_url: str) -> Database:
    database = Database(postgres_schema_url, pool_size=25, max_overflow=0)
    database.upgrade()
    yield database  # type: ignore[misc]
    database.dispose()


@pytest.mark.postgres
@pytest.mark.skipif(not os.environ.get("SYNCD_TEST_POSTGRES_URL"), reason="needs PostgreSQL")
def test_postgres_twenty_students_one_slot_exactly_one_wins(pg_db: Database) -> None:
    seed(pg_db, students=20, sessions=None)
    outcomes = race(pg_db, [BookingRequest("intro", "m0", f"s{i}", SLOT) for i in range(20)])
    assert outcomes == Counter({"booked": 1, "slot_unavailable": 19})
    with pg_db.session() as session:
        assert len(repo.bookings(session, mentor_id="m0")) == 1


@pytest.mark.postgres
@pytest.mark.skipif(not os.environ.get("SYNCD_TEST_POSTGRES_URL"), reason="needs PostgreSQL")
def test_postgres_last_session_spent_once_across_mentors(pg_db: Database) -> None:
    seed(pg_db, students=1, sessions=1, mentors=5)
    requests = [
        BookingRequest("intro", f"m{i % 5}", "s0", SLOT + timedelta(hours=i // 5 * 2))
        for i in range(10)
    ]
    outcomes = race(pg_db, requests)
    assert outcomes == Counter({"booked": 1, "quota_exhausted": 9})
    with pg_db.session() as session:
        grants = repo.grants_for(session, "s0")
        assert len(repo.unrefunded_consumptions(session, [g.id for g in grants])) == 1


def _book_in_processes(db_url: str, argv_list: list[list[str]], tmp_path: Path) -> Counter[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    # Each child waits for a start file, so all of them contend at the same moment.
    go = tmp_path / "go"
    script = (
        "import os, sys, time\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.01)\n"
        "from syncd.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    with_now = ["--database", db_url]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, *with_now, *argv],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv in argv_list
    ]
    go.write_text("go")
    outcomes: Counter[str] = Counter()
    for proc in procs:
        _out, err = proc.communicate(timeout=120)
        if proc.returncode == 0:
            outcomes["booked"] += 1
        elif "slot not available" in err:
            outcomes["slot_unavailable"] += 1
        elif "quota exhausted" in err:
            outcomes["quota_exhausted"] += 1
        else:
            outcomes[f"unexpected: {err.strip()[-200:]}"] += 1
    return outcomes


def _future_slot() -> datetime:
    """Next Monday 09:00 Madrid at least two days ahead: the CLI books against the real clock."""
    day = datetime.now(UTC).date() + timedelta(days=2)
    while day.weekday() != 0:
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, 9, tzinfo=UTC)  # 10:00 Madrid (UTC+1/+2)


def test_sqlite_processes_one_slot_exactly_one_wins(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'race.db'}"
    database = Database(url)
    database.upgrade()
    seed(database, students=12, sessions=None)
    database.dispose()
    start = _future_slot().isoformat()
    argv = [
        ["book", "intro", "--mentor", "m0", "--student", f"s{i}", "--start", start]
        for i in range(12)
    ]
    assert _book_in_processes(url, argv, tmp_path) == Counter({"booked": 1, "slot_unavailable": 11})


def test_sqlite_processes_last_session_spent_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'race.db'}"
    database = Database(url)
    database.upgrade()
    seed(database, students=1, sessions=1, mentors=5)
    database.dispose()
    base = _future_slot()
    argv = [
        [
            "book",
            "intro",
            "--mentor",
            f"m{i % 5}",
            "--student",
            "s0",
            "--start",
            (base + timedelta(hours=i // 5 * 2)).isoformat(),
        ]
        for i in range(10)
    ]
    assert _book_in_processes(url, argv, tmp_path) == Counter({"booked": 1, "quota_exhausted": 9})
