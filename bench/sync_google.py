"""Benchmark: pulling many Google calendars concurrently, as the daemon does.

Run by hand (not in CI), from the project root:

    .venv/bin/python -m bench.sync_google [--calendars 200] [--events 500] [--latency 0.02]

Set-up: one FakeGoogle (tests/fake_google.py) answering every request after `--latency`
seconds; `--calendars` mentors, each with their own OAuth grant and one calendar of `--events`
timed events over the next 90 days, seeded straight into the fake's in-memory store (no HTTP).

Each round pulls every calendar on a thread pool as wide as the daemon's network pool
(`DaemonSettings.network_workers`) and turns each pulled event into busy time with
`syncd.busy_google.busy_from_google_event` (the pure part of the sync engine; the database
writes of `syncd.sync` are left out). Two ways of holding connectors are measured:
- daemon: like `syncd.sync.sync_claimed`, a new GoogleConnector per calendar per round (so a
  new access token per round: the stored grant holds only the refresh token);
- reused: one connector per calendar kept across rounds (access token cached in memory).
Rounds: the first full pull, then an incremental round after changing `--change-share` of each
calendar's events. Requests are counted by the fake server: Calendar API calls and OAuth token
calls separately.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.google import GoogleConnector
from syncd.busy_google import busy_from_google_event
from syncd.daemon import DaemonSettings
from tests.fake_google import API_PREFIX, FakeGoogle

CLIENT_ID = "bench-client"
CLIENT_SECRET = "bench-secret"
ROUND_TIMEOUT = 900.0  # seconds; a round that takes longer is a failure, not a wait


@dataclass
class Mentor:
    calendar_id: str
    grant: dict[str, str]  # authorized-user info, as syncd stores it
    state: str | None = None
    connector: GoogleConnector | None = None  # kept only in "reused" mode


@dataclass(frozen=True)
class RoundResult:
    name: str
    seconds: float
    api_requests: int
    token_requests: int
    pulled_events: int
    busy_occurrences: int


@dataclass
class Bench:
    google: FakeGoogle
    mentors: list[Mentor]
    workers: int
    reuse: bool
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def run_round(self, name: str) -> RoundResult:
        seen = len(self.google.requests)
        started = time.perf_counter()
        with ThreadPoolExecutor(self.workers, thread_name_prefix="bench-net") as pool:
            futures = [pool.submit(self.pull_one, mentor) for mentor in self.mentors]
            counts = [future.result(timeout=ROUND_TIMEOUT) for future in futures]
        elapsed = time.perf_counter() - started
        paths = [request.path for request in self.google.requests[seen:]]
        return RoundResult(
            name,
            elapsed,
            api_requests=sum(1 for path in paths if path.startswith(API_PREFIX)),
            token_requests=sum(1 for path in paths if path == "/token"),
            pulled_events=sum(pulled for pulled, _ in counts),
            busy_occurrences=sum(busy for _, busy in counts),
        )

    def pull_one(self, mentor: Mentor) -> tuple[int, int]:
        """One calendar's pull and translation; returns (events pulled, busy occurrences)."""
        connector = mentor.connector or self.connector(mentor)
        try:
            changes = connector.pull(mentor.calendar_id, mentor.state)
        finally:
            if not self.reuse:
                connector.close()
        zone = changes.calendar_timezone or "UTC"
        busy = 0
        for remote in changes.upserts:
            if busy_from_google_event(remote.data, calendar_timezone=zone) is not None:
                busy += 1
        mentor.state = changes.state
        return len(changes.upserts), busy

    def connector(self, mentor: Mentor) -> GoogleConnector:
        connector = GoogleConnector(
            mentor.grant,
            api_endpoint=self.google.api_endpoint,
            token_uri=self.google.token_uri,
            timeout=30,
        )
        if self.reuse:
            mentor.connector = connector
        return connector

    def close(self) -> None:
        for mentor in self.mentors:
            if mentor.connector is not None:
                mentor.connector.close()


# ----------------------------------------------------------------- seeding


def seed(google: FakeGoogle, calendars: int, events: int, now: datetime) -> list[Mentor]:
    """Calendars and events written into the fake's store directly, no HTTP."""
    mentors = []
    for index in range(calendars):
        calendar_id = f"mentor{index:04d}@example.org"
        google.add_calendar(calendar_id, time_zone="Europe/Madrid", primary=True)
        for number in range(events):
            google.put_event(calendar_id, _event(number, now))
        grant = {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "refresh_token": google.issue_refresh_token(CLIENT_ID),
        }
        mentors.append(Mentor(calendar_id, grant))
    return mentors


def _event(number: int, now: datetime) -> dict[str, Any]:
    start = (now + timedelta(hours=7 + 4 * number)).replace(minute=0, second=0, microsecond=0)
    event: dict[str, Any] = {
        "id": f"ev{number:06d}",
        "summary": f"Meeting {number}",
        "start": {"dateTime": _rfc3339(start), "timeZone": "Europe/Madrid"},
        "end": {"dateTime": _rfc3339(start + timedelta(minutes=45))},
    }
    if number % 10 == 0:
        event["transparency"] = "transparent"  # some events must not block
    return event


def change_events(google: FakeGoogle, mentors: list[Mentor], share: float, events: int) -> int:
    """Edit `share` of each calendar's events, as the mentors would in Google's UI."""
    per_calendar = max(1, round(events * share))
    step = max(1, events // per_calendar)
    for mentor in mentors:
        for number in range(1, per_calendar * step, step):  # from 1: event 0 is transparent
            google.change_event(mentor.calendar_id, f"ev{number:06d}", summary="Moved")
    return per_calendar


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# ----------------------------------------------------------------- running


@contextmanager
def fake_google(latency: float) -> Iterator[FakeGoogle]:
    with FakeGoogle() as google:
        google.register_client(CLIENT_ID, CLIENT_SECRET)
        google.latency = latency
        yield google


def run_mode(args: argparse.Namespace, reuse: bool, workers: int) -> list[RoundResult]:
    now = datetime.now(UTC)
    with fake_google(args.latency) as google:
        started = time.perf_counter()
        mentors = seed(google, args.calendars, args.events, now)
        print(f"  seeded {args.calendars} x {args.events} events in {_since(started):.1f}s")
        bench = Bench(google, mentors, workers, reuse, now)
        try:
            results = [bench.run_round("full")]
            changed = change_events(google, mentors, args.change_share, args.events)
            results.append(bench.run_round(f"incremental ({changed}/calendar)"))
            results.append(bench.run_round("no-change"))
        finally:
            bench.close()
    return results


def _since(started: float) -> float:
    return time.perf_counter() - started


def report(mode: str, results: list[RoundResult], calendars: int) -> None:
    print(f"\n{mode}")
    print(
        f"  {'round':<28}{'seconds':>9}{'API req':>9}{'token req':>11}"
        f"{'API req/cal':>13}{'events':>8}{'busy':>8}"
    )
    for result in results:
        print(
            f"  {result.name:<28}{result.seconds:>9.2f}{result.api_requests:>9}"
            f"{result.token_requests:>11}{result.api_requests / calendars:>13.2f}"
            f"{result.pulled_events:>8}{result.busy_occurrences:>8}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Concurrent Google pulls against FakeGoogle")
    parser.add_argument("--calendars", type=int, default=200)
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per request")
    parser.add_argument("--change-share", type=float, default=0.01)
    parser.add_argument("--modes", default="daemon,reused", help="daemon, reused or both")
    args = parser.parse_args(argv)
    workers = DaemonSettings().network_workers
    print(
        f"FakeGoogle, {args.calendars} calendars x {args.events} events, "
        f"{args.latency * 1000:.0f} ms per request, {workers} threads (daemon network_workers); "
        f"Python {platform.python_version()}"
    )
    modes: dict[str, Callable[[], list[RoundResult]]] = {
        "daemon": lambda: run_mode(args, reuse=False, workers=workers),
        "reused": lambda: run_mode(args, reuse=True, workers=workers),
    }
    for mode in args.modes.split(","):
        label = (
            "daemon: new connector per calendar per round"
            if mode == "daemon"
            else ("reused: one connector per calendar across rounds")
        )
        report(label, modes[mode](), args.calendars)


if __name__ == "__main__":
    main()
