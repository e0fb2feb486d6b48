"""Booking throughput and latency with 8 concurrent clients (run by hand, not in CI).

    .venv/bin/python bench/booking.py [--url postgresql+psycopg://postgres@127.0.0.1:5432/test]
                                      [--per-client 100] [--sqlite]

Two scenarios on PostgreSQL, each in a fresh schema: 8 clients booking 8 distinct mentors
(no contention on the mentor lock) and 8 clients booking one hot mentor (every booking waits
for the mentor lock). With --sqlite the same scenarios also run on a SQLite file, where all
writers serialise on the database lock. Prints bookings/second and p50/p99 latency.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from urllib.parse import quote

from sqlalchemy import create_engine, text

from syncd import directory, quotas
from syncd.booking import BookingRequest, BookingService
from syncd.store.db import Database, normalise_url

CLIENTS = 8
NOW = datetime(2027, 1, 4, 0, tzinfo=UTC)
SLOT = timedelta(minutes=30)


def seed(db: Database) -> None:
    with db.write_session() as session:
        directory.add_service(session, "s", name="Bench", duration=30, step=30, horizon_days=365)
        for i in range(CLIENTS):
            directory.add_mentor(
                session, f"m{i}", name=f"M{i}", email=f"m{i}@example.org", timezone="UTC"
            )
            directory.set_weekly_hours(session, f"m{i}", ["daily 00:00-24:00"])
            student = directory.add_student(
                session, f"s{i}", name=f"S{i}", email=f"s{i}@example.org", timezone="UTC"
            )
            session.flush()
            directory.assign_service(session, "s", [f"m{i}"])
            quotas.grant(session, student, service=directory.require_service(session, "s"),
                         sessions=None, today=date(2027, 1, 1))  # fmt: skip


def run_clients(
    db: Database, per_client: int, pick: Callable[[int, int], tuple[str, datetime]]
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(CLIENTS)

    def client(index: int) -> None:
        service = BookingService(db)
        barrier.wait()
        for k in range(per_client):
            mentor, start = pick(index, k)
            began = time.perf_counter()
            service.book(BookingRequest("s", mentor, f"s{index}", start), now=NOW)
            with lock:
                latencies.append(time.perf_counter() - began)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - began, latencies


def distinct(index: int, k: int) -> tuple[str, datetime]:
    return f"m{index}", NOW + timedelta(days=1) + k * SLOT


def hot(index: int, k: int) -> tuple[str, datetime]:
    return "m0", NOW + timedelta(days=1) + (k * CLIENTS + index) * SLOT


def report(backend: str, scenario: str, elapsed: float, latencies: list[float]) -> None:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(
        f"{backend:10} {scenario:18} {len(ordered) / elapsed:8.1f} bookings/s"
        f"   p50 {statistics.median(ordered) * 1000:6.1f} ms   p99 {p99 * 1000:6.1f} ms"
    )


def postgres_database(base_url: str) -> tuple[Database, Callable[[], None]]:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(normalise_url(base_url))
    with admin.begin() as connection:
        connection.execute(text("CREATE EXTENSION IF NOT EXISTS btree_gist"))
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{normalise_url(base_url)}?options={quote(f'-csearch_path={schema},public')}"
    db = Database(url, pool_size=CLIENTS + 2, max_overflow=0)

    def drop() -> None:
        db.dispose()
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return db, drop


def scenario_run(
    make: Callable[[], tuple[Database, Callable[[], None]]], backend: str, per_client: int
) -> None:
    for name, pick in (("distinct mentors", distinct), ("one hot mentor", hot)):
        db, cleanup = make()
        try:
            db.upgrade()
            seed(db)
            elapsed, latencies = run_clients(db, per_client, pick)
            report(backend, name, elapsed, latencies)
        finally:
            cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--per-client", type=int, default=100)
    parser.add_argument("--sqlite", action="store_true", help="also run on a SQLite file")
    args = parser.parse_args()
    print(f"{CLIENTS} clients x {args.per_client} bookings each")
    scenario_run(lambda: postgres_database(args.url), "postgresql", args.per_client)
    if args.sqlite:

        def sqlite_database() -> tuple[Database, Callable[[], None]]:
            folder = tempfile.TemporaryDirectory()
            db = Database(f"sqlite:///{folder.name}/bench.db")
            return db, lambda: (db.dispose(), folder.cleanup())  # type: ignore[func-returns-value]

        scenario_run(sqlite_database, "sqlite", args.per_client)


if __name__ == "__main__":
    main()
