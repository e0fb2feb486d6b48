"""HTTP API benchmark: slots and bookings under concurrent clients (run by hand, not in CI).

    .venv/bin/python bench/api.py [--url postgresql+psycopg://postgres@127.0.0.1:5432/test]
                                  [--clients 32] [--requests 1000] [--seconds 30] [--workers 1]

A service with 50 mentors (five zones, weekday and Saturday hours, three busy intervals per
mentor and day) is asked for 28 days of slots. The server is a real uvicorn on 127.0.0.1 in a
child process (so the load generator does not share its GIL); the load generator is an async
httpx client with `--clients` concurrent connections, bounded by `--requests` per scenario and
`--seconds`. Reported: requests/second and p50/p99 latency for

* GET /v1/services/{slug}/slots (28 days, every mentor) under load, and one client at a time;
* POST /v1/bookings under load, each request a distinct free (mentor, hour);
* the raw engine in this process: `syncd.slots.find_slots` (database read + engine) and
  `syncd.availability.compute_slots` alone, with the HTTP/engine ratio of the same request.

Without --url a SQLite file in a temporary directory is used; with a PostgreSQL URL the bench
works in a fresh schema it drops afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import itertools
import multiprocessing
import random
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from multiprocessing.process import BaseProcess
from pathlib import Path
from urllib.parse import quote

import httpx
from sqlalchemy import create_engine, text

from syncd import availability, directory, quotas
from syncd.slots import find_slots, load_availability, service_rules
from syncd.store import repo
from syncd.store.db import Database, normalise_url
from syncd.store.models import BusyInterval, Calendar
from syncd.timeutil import local_dates_range, zone

NOW = datetime(2027, 3, 1, 0, 0, tzinfo=UTC)
FIRST_DAY = date(2027, 3, 1)
SERVICE = "bench"
KEY = "bench-app-key-0123456789"
ZONES = ("Europe/Madrid", "America/New_York", "Asia/Kolkata", "Africa/Lagos", "UTC")
SLOT_PARAMS = {"tz": "UTC", "from": FIRST_DAY.isoformat(), "days": "28"}
STARTUP_TIMEOUT_S = 20.0


# -- data -----------------------------------------------------------------------------------


def seed(db: Database, mentors: int, students: int, days: int) -> None:
    rng = random.Random(7)
    with db.write_session() as session:
        directory.add_service(session, SERVICE, name="Bench", duration=60, step=30, horizon_days=60)
        for index in range(mentors):
            mentor_id = f"m{index:02d}"
            directory.add_mentor(
                session,
                mentor_id,
                name=f"Mentor {index}",
                email=f"{mentor_id}@example.org",
                timezone=ZONES[index % len(ZONES)],
            )
        for index in range(students):
            directory.add_student(
                session,
                f"s{index:02d}",
                name=f"S {index}",
                email=f"s{index}@example.org",
                timezone="UTC",
            )
        session.flush()
        ids = [f"m{index:02d}" for index in range(mentors)]
        for mentor_id in ids:
            directory.set_weekly_hours(
                session, mentor_id, ["mon-fri 09:00-17:00", "sat 10:00-13:00"]
            )
            _add_busy(session, mentor_id, days, rng)
        directory.assign_service(session, SERVICE, ids)
        service = directory.require_service(session, SERVICE)
        for index in range(students):
            student = directory.require_student(session, f"s{index:02d}")
            quotas.grant(session, student, service=service, sessions=None, today=FIRST_DAY)


def _add_busy(session: object, mentor_id: str, days: int, rng: random.Random) -> None:
    calendar = Calendar(mentor_id=mentor_id, provider="caldav", remote_id=f"bench:{mentor_id}")
    session.add(calendar)  # type: ignore[attr-defined]
    session.flush()  # type: ignore[attr-defined]
    for day in range(days + 2):
        midnight = NOW + timedelta(days=day)
        for _ in range(3):
            start = midnight + timedelta(minutes=rng.randrange(0, 24 * 60, 15))
            end = start + timedelta(minutes=rng.choice((30, 60, 90)))
            session.add(BusyInterval(calendar_id=calendar.id, start=start, end=end))  # type: ignore[attr-defined]


@contextlib.contextmanager
def database(url: str | None) -> Iterator[str]:
    """A migrated, empty database URL: a temporary SQLite file or a fresh PostgreSQL schema."""
    if url is None:
        with tempfile.TemporaryDirectory(prefix="syncd-bench-api-") as directory_name:
            yield f"sqlite:///{Path(directory_name) / 'bench.db'}"
        return
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(normalise_url(url))
    with admin.begin() as connection:
        connection.execute(text("CREATE EXTENSION IF NOT EXISTS btree_gist"))
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in url else "?"
    try:
        yield f"{normalise_url(url)}{separator}options={quote(f'-csearch_path={schema},public')}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


# -- the server (child process) ---------------------------------------------------------------


def serve(db_url: str, port: int) -> None:
    import uvicorn

    from syncd.api import ApiKey, ApiSettings, create_app

    settings = ApiSettings(
        api_keys=(ApiKey("bench", "app", hashlib.sha256(KEY.encode()).hexdigest()),),
        clock=lambda: NOW,
    )
    app = create_app(Database(db_url), settings)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_ready(base_url: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(f"{base_url}/v1/services", headers=_headers(), timeout=1.0)
            if answer.status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the server at {base_url} did not answer within {STARTUP_TIMEOUT_S} s")


def _headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


# -- load -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stats:
    label: str
    count: int
    seconds: float
    latencies_ms: list[float]
    statuses: Counter[int]

    @property
    def rps(self) -> float:
        return self.count / self.seconds

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    def row(self) -> str:
        codes = ", ".join(f"{code}: {n}" for code, n in sorted(self.statuses.items()))
        return (
            f"| {self.label} | {self.count} | {self.rps:,.0f} | {self.percentile(0.5):.1f} "
            f"| {self.percentile(0.99):.1f} | {codes} |"
        )


Send = Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]


async def run_load(
    base_urls: list[str], label: str, send: Send, clients: int, total: int, seconds: float
) -> Stats:
    """`clients` concurrent connections spread over the servers, until `total` requests are
    sent or `seconds` pass."""
    counter = itertools.count()
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def worker(client: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            index = next(counter)
            if index >= total:
                return
            started = time.perf_counter()
            response = await send(client, index)
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[response.status_code] += 1

    async with contextlib.AsyncExitStack() as stack:
        pool = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=url, headers=_headers(), limits=limits, timeout=30.0)
            )
            for url in base_urls
        ]
        for client in pool:
            await send(client, -1)  # warm up the connections and the servers' caches
        started = time.perf_counter()
        await asyncio.gather(*(worker(pool[n % len(pool)]) for n in range(clients)))
        elapsed = time.perf_counter() - started
    return Stats(label, len(latencies), elapsed, latencies, statuses)


def slots_sender() -> Send:
    async def send(client: httpx.AsyncClient, index: int) -> httpx.Response:
        return await client.get(f"/v1/services/{SERVICE}/slots", params=SLOT_PARAMS)

    return send


def booking_sender(pairs: list[tuple[str, datetime]], students: int) -> Send:
    async def send(client: httpx.AsyncClient, index: int) -> httpx.Response:
        if index < 0:
            return await client.get("/v1/services")
        mentor, start = pairs[index]
        body = {
            "service": SERVICE,
            "mentor": mentor,
            "student": f"s{index % students:02d}",
            "start": start.isoformat(),
        }
        return await client.post(
            "/v1/bookings", json=body, headers={"Idempotency-Key": f"bench-{index}"}
        )

    return send


def bookable_pairs(db: Database, days: int) -> list[tuple[str, datetime]]:
    """Distinct free (mentor, start) pairs on the hour: 60-minute sessions that cannot overlap."""
    with db.session() as session:
        slots = find_slots(session, SERVICE, tz_name="UTC", first_day=FIRST_DAY, days=days, now=NOW)
    pairs = [(m, slot.start) for slot in slots if slot.start.minute == 0 for m in slot.mentors]
    random.Random(11).shuffle(pairs)  # spread the writers over mentors, like real students
    return pairs


# -- the engine, in process -----------------------------------------------------------------


def time_engine(db: Database, days: int, repeat: int) -> tuple[float, float, int]:
    """Median ms of find_slots (database + engine) and of compute_slots alone; slot count."""
    whole: list[float] = []
    for _ in range(repeat):
        started = time.perf_counter()
        with db.session() as session:
            found = find_slots(
                session, SERVICE, tz_name="UTC", first_day=FIRST_DAY, days=days, now=NOW
            )
        whole.append((time.perf_counter() - started) * 1000)
    with db.session() as session:
        service = directory.require_service(session, SERVICE)
        start, end = local_dates_range(FIRST_DAY, days, zone("UTC"))
        mentors = list(repo.bookable_mentors(session, SERVICE))
        loaded = load_availability(session, service, mentors, start, end)
        rules = service_rules(service)
    pure: list[float] = []
    for _ in range(repeat):
        started = time.perf_counter()
        availability.compute_slots(rules, loaded, NOW, start, end)
        pure.append((time.perf_counter() - started) * 1000)
    return statistics.median(whole), statistics.median(pure), len(found)


# -- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="PostgreSQL URL (default: a temporary SQLite file)")
    parser.add_argument("--mentors", type=int, default=50)
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=1000, help="per scenario")
    parser.add_argument("--seconds", type=float, default=30.0, help="cap per scenario")
    parser.add_argument("--repeat", type=int, default=30, help="sequential samples")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn processes")
    args = parser.parse_args()
    with database(args.url) as db_url:
        db = Database(db_url)
        db.upgrade()
        seed(db, args.mentors, args.clients, args.days)
        engine_ms, pure_ms, slot_count = time_engine(db, args.days, args.repeat)
        pairs = bookable_pairs(db, args.days)
        servers = start_servers(db_url, args.workers)
        try:
            rows = asyncio.run(measure(servers, args, pairs))
        finally:
            for process, _ in servers:
                process.terminate()
                process.join(10)
        db.dispose()
    report(args, db_url, engine_ms, pure_ms, slot_count, rows)


def start_servers(db_url: str, workers: int) -> list[tuple[BaseProcess, str]]:
    """`workers` uvicorn processes on their own ports; the load generator spreads over them."""
    context = multiprocessing.get_context("spawn")
    servers: list[tuple[BaseProcess, str]] = []
    for _ in range(workers):
        port = free_port()
        process = context.Process(target=serve, args=(db_url, port), daemon=True)
        process.start()
        servers.append((process, f"http://127.0.0.1:{port}"))
    for _, base_url in servers:
        wait_until_ready(base_url)
    return servers


async def measure(
    servers: list[tuple[BaseProcess, str]],
    args: argparse.Namespace,
    pairs: list[tuple[str, datetime]],
) -> list[Stats]:
    base_urls = [url for _, url in servers]
    sequential = await run_load(
        base_urls, "slots, 1 client", slots_sender(), 1, args.repeat, args.seconds
    )
    loaded = await run_load(
        base_urls,
        f"slots, {args.clients} clients",
        slots_sender(),
        args.clients,
        args.requests,
        args.seconds,
    )
    total = min(args.requests, len(pairs))
    booking = await run_load(
        base_urls,
        f"bookings, {args.clients} clients",
        booking_sender(pairs, args.clients),
        args.clients,
        total,
        args.seconds,
    )
    return [sequential, loaded, booking]


def report(
    args: argparse.Namespace,
    db_url: str,
    engine_ms: float,
    pure_ms: float,
    slot_count: int,
    rows: list[Stats],
) -> None:
    import platform

    sequential = rows[0]
    backend = "PostgreSQL" if db_url.startswith("postgresql") else "SQLite"
    print(
        f"{platform.python_implementation()} {platform.python_version()}, {backend}, "
        f"{args.mentors} mentors x {args.days} days ({slot_count} slots), "
        f"{multiprocessing.cpu_count()} CPUs, {args.workers} uvicorn process(es)"
    )
    print()
    print("| scenario | requests | req/s | p50 ms | p99 ms | statuses |")
    print("|---|---:|---:|---:|---:|---|")
    for stats in rows:
        print(stats.row())
    print()
    print(
        f"engine: find_slots (DB + engine) median {engine_ms:.1f} ms; "
        f"compute_slots alone median {pure_ms:.1f} ms"
    )
    http_ms = sequential.percentile(0.5)
    print(
        f"HTTP / engine, one client: {http_ms:.1f} / {engine_ms:.1f} ms = "
        f"{http_ms / engine_ms:.2f}x (goal <= 2x)"
    )


if __name__ == "__main__":
    main()
