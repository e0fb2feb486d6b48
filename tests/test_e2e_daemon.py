"""`syncd run` end to end, as real processes, against Radicale (behind a proxy that can fail or
hold requests), aiosmtpd and PostgreSQL: exactly-once write-back and invites through crashes,
replicas sharing calendars with leases, and riding out a calendar server outage."""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import httpx
import icalendar
import pytest

from syncd.identity import booking_uid
from syncd.store.db import Database
from syncd.store.models import Calendar, OutboxItem
from tests.conftest import POSTGRES_URL
from tests.e2e import (
    DaemonProcess,
    SyncdProcesses,
    TcpProxy,
    answers,
    calendar_events,
    proxy_for,
    seed_world,
    syncd_cli,
    timed_event,
    wait_until,
    write_config,
)
from tests.fake_google import FakeGoogle
from tests.servers import DavServer, free_port, make_calendar, put_object, radicale_server
from tests.smtp_server import ReceivedMail, SmtpTestServer, running_smtp_server

PASSWORD = "correct horse battery"
OUTBOX_INTERVAL = 0.5
TOMORROW = datetime.now(UTC).date() + timedelta(days=1)


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def dav() -> Iterator[DavServer]:
    with radicale_server(auth=("ana", PASSWORD)) as server:
        yield server


@pytest.fixture
def proxy(dav: DavServer) -> Iterator[TcpProxy]:
    with proxy_for(dav) as running:
        yield running


@pytest.fixture
def smtp() -> Iterator[SmtpTestServer]:
    with running_smtp_server() as server:
        yield server


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'e2e.db'}"


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[SyncdProcesses]:
    running = SyncdProcesses(tmp_path)
    try:
        yield running
    finally:
        running.cleanup()


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "dav-password"
    path.write_text(PASSWORD + "\n")
    return path


@pytest.fixture
def database(sqlite_url: str) -> Iterator[Database]:
    seed_world(sqlite_url)
    db = Database(sqlite_url)
    try:
        yield db
    finally:
        db.dispose()


# -- shared steps -----------------------------------------------------------------------------


def connect_calendar(
    config: Path, url: str, proxy: TcpProxy, dav: DavServer, password_file: Path, *extra: str
) -> None:
    """`syncd calendar add ana caldav ...`, through the proxy."""
    syncd_cli(
        config, url, "calendar", "add", "ana", "caldav",
        "--url", proxy.translate(dav.principal_url), "--username", "ana",
        "--password-file", str(password_file), *extra,
    )  # fmt: skip


def outbox_config(tmp_path: Path, smtp: SmtpTestServer, *, lease: int = 30) -> Path:
    return write_config(
        tmp_path / "syncd.toml",
        {
            "daemon": {
                "outbox_interval_seconds": OUTBOX_INTERVAL,
                "sync_check_seconds": 1,
                "lease_seconds": lease,
                "shutdown_timeout_seconds": 2,
            },
            "http": {"enabled": False},
            "sync": {"interval_seconds": 60},
            "smtp": {
                "host": smtp.host,
                "port": smtp.port,
                "security": "none",
                "from": "Mentoring <mentoring@example.org>",
            },
            "invites": {"organizer": "mentoring@example.org"},
        },
    )


@dataclass(frozen=True)
class OutboxSetup:
    config: Path
    url: str
    calendar_url: str  # the destination, on Radicale itself


def prepare_outbox(
    tmp_path: Path,
    sqlite_url: str,
    dav: DavServer,
    proxy: TcpProxy,
    smtp: SmtpTestServer,
    password_file: Path,
    *,
    lease: int = 30,
) -> OutboxSetup:
    calendar_url = make_calendar(dav, "work")
    config = outbox_config(tmp_path, smtp, lease=lease)
    connect_calendar(
        config,
        sqlite_url,
        proxy,
        dav,
        password_file,
        "--destination",
        proxy.translate(calendar_url),
    )
    return OutboxSetup(config, sqlite_url, calendar_url)


def book(setup: OutboxSetup, hour: int = 10) -> str:
    start = f"{TOMORROW.isoformat()}T{hour:02d}:00:00Z"
    output = syncd_cli(
        setup.config, setup.url, "book", "intro", "--mentor", "ana", "--student", "stu",
        "--start", start, "--json",
    )  # fmt: skip
    booking_id = json.loads(output)["id"]
    assert isinstance(booking_id, str)
    return booking_id


def outbox_rows(db: Database, booking_id: str) -> list[tuple[str, str, str | None]]:
    with db.session() as session:
        rows = session.query(OutboxItem).filter(OutboxItem.booking_id == booking_id)
        return sorted((row.kind, row.status, row.lease_owner) for row in rows)


def wait_outbox_done(db: Database, booking_id: str, timeout: float = 30.0) -> None:
    def done() -> bool:
        rows = outbox_rows(db, booking_id)
        return bool(rows) and all(status == "done" for _, status, _ in rows)

    wait_until(done, timeout, f"the outbox of booking {booking_id} to be done")
    # A few more drains: a duplicate write or resend would show up now.
    time.sleep(4 * OUTBOX_INTERVAL)


def booking_events(dav: DavServer, calendar_url: str, booking_id: str) -> list[int]:
    """The SEQUENCE of every event in the calendar, asserting each is the booking's."""
    events = calendar_events(dav, calendar_url)
    assert [str(event["UID"]) for event in events] == [booking_uid(booking_id)] * len(events)
    return [int(event.get("SEQUENCE", 0)) for event in events]


def invite_of(mail: ReceivedMail) -> tuple[str, str, int, str]:
    """(Message-ID, UID, SEQUENCE, METHOD) of an iMIP invite."""
    calendar_part = next(
        part for part in mail.message.walk() if part.get_content_type() == "text/calendar"
    )
    calendar = icalendar.Calendar.from_ical(calendar_part.get_content())
    [event] = calendar.walk("VEVENT")
    sequence = int(event.get("SEQUENCE", 0))
    return str(mail.message["Message-ID"]), str(event["UID"]), sequence, str(calendar["METHOD"])


def assert_one_invite_for(smtp: SmtpTestServer, booking_id: str) -> None:
    [mail] = smtp.messages
    assert mail.rcpt_tos == ("stu@example.org",)
    _, uid, sequence, method = invite_of(mail)
    assert (uid, sequence, method) == (booking_uid(booking_id), 0, "REQUEST")


# -- 1. a booking: one event, one invite ------------------------------------------------------


def test_a_booking_becomes_exactly_one_event_and_one_invite(
    tmp_path: Path,
    sqlite_url: str,
    database: Database,
    dav: DavServer,
    proxy: TcpProxy,
    smtp: SmtpTestServer,
    password_file: Path,
    processes: SyncdProcesses,
) -> None:
    setup = prepare_outbox(tmp_path, sqlite_url, dav, proxy, smtp, password_file)
    [daemon] = processes.start(setup.config, sqlite_url)

    booking_id = book(setup)
    wait_outbox_done(database, booking_id)

    assert booking_events(dav, setup.calendar_url, booking_id) == [0]
    assert_one_invite_for(smtp, booking_id)
    assert daemon.stop() == 0


# -- 2. kill -9 in the middle of the outbox ---------------------------------------------------


def test_killed_while_writing_the_event_then_restarted_still_one_event_and_one_invite(
    tmp_path: Path,
    sqlite_url: str,
    database: Database,
    dav: DavServer,
    proxy: TcpProxy,
    smtp: SmtpTestServer,
    password_file: Path,
    processes: SyncdProcesses,
) -> None:
    setup = prepare_outbox(tmp_path, sqlite_url, dav, proxy, smtp, password_file, lease=3)
    proxy.hold("PUT")
    [first] = processes.start(setup.config, sqlite_url)
    booking_id = book(setup)
    assert proxy.held.wait(20), "the daemon never wrote the event"

    first.kill()  # its PUT is in flight: sent, not yet answered
    owner = first.owner()
    assert outbox_rows(database, booking_id) == [
        ("calendar_upsert", "pending", owner),
        ("invite", "pending", owner),
    ]
    proxy.release()  # the dead daemon's PUT reaches the server: written, never recorded
    wait_until(lambda: len(calendar_events(dav, setup.calendar_url)) == 1, 10, "the orphan write")
    assert smtp.messages == []

    [second] = processes.start(setup.config, sqlite_url)
    wait_outbox_done(database, booking_id)

    assert booking_events(dav, setup.calendar_url, booking_id) == [0]
    assert_one_invite_for(smtp, booking_id)
    assert any("already exists" in message for message in second.messages())
    assert second.stop() == 0


def test_killed_inside_the_smtp_transaction_resends_an_identical_copy(
    tmp_path: Path,
    sqlite_url: str,
    database: Database,
    dav: DavServer,
    proxy: TcpProxy,
    smtp: SmtpTestServer,
    password_file: Path,
    processes: SyncdProcesses,
) -> None:
    setup = prepare_outbox(tmp_path, sqlite_url, dav, proxy, smtp, password_file, lease=3)
    reply_held = smtp.delay_next_data_reply(30)
    [first] = processes.start(setup.config, sqlite_url)
    booking_id = book(setup)
    assert reply_held.wait(20), "the daemon never sent the invite"

    first.kill()  # the server has the message; the daemon never heard "250"
    assert ("invite", "pending", first.owner()) in outbox_rows(database, booking_id)

    [second] = processes.start(setup.config, sqlite_url)
    wait_outbox_done(database, booking_id)

    assert booking_events(dav, setup.calendar_url, booking_id) == [0]
    copies = smtp.messages
    assert len(copies) == 2  # the first delivery and the resend after the crash
    assert invite_of(copies[0]) == invite_of(copies[1])
    assert invite_of(copies[0])[1:] == (booking_uid(booking_id), 0, "REQUEST")
    assert copies[0].raw == copies[1].raw
    assert second.stop() == 0


# -- 3. replicas on PostgreSQL ----------------------------------------------------------------

REPLICA_CALENDARS = 60
REPLICA_INTERVAL = 5  # [sync] interval_seconds
REPLICA_LEASE = 6  # [daemon] lease_seconds (an int)
# A due calendar waits for the next check of some replica: sync_check_seconds (1) plus the
# sync job's scheduling jitter (up to 2 s), plus slack for a loaded 2-core machine.
CHECK_WAIT = 3.0 + 1.5
# A pull's log line carries its end and its duration. The next pull of a calendar is due an
# interval (±10 %) after the previous one finished, so the idle time between the end of one pull
# and the start of the next is load-independent: shorter means a duplicate.
MIN_GAP = REPLICA_INTERVAL * 0.9 - 0.3  # idle time shorter than this: pulled twice
MAX_GAP = REPLICA_INTERVAL * 1.1 + CHECK_WAIT  # longer: the calendar was starved
_PULLED = re.compile(r"^pulled calendar (\d+):.* in ([0-9.]+)s$")


@dataclass(frozen=True)
class Pull:
    calendar_id: int
    at: datetime  # when it ended
    replica: int
    seconds: float = 0.0

    @property
    def started(self) -> datetime:
        return self.at - timedelta(seconds=self.seconds)


def pulls(replicas: list[DaemonProcess]) -> list[Pull]:
    found = []
    for index, replica in enumerate(replicas):
        for record in replica.records():
            match = _PULLED.match(str(record.get("message")))
            if match:
                at = datetime.fromisoformat(str(record["timestamp"]))
                found.append(Pull(int(match.group(1)), at, index, float(match.group(2))))
    return sorted(found, key=lambda pull: pull.at)


def by_calendar(found: list[Pull], since: datetime | None = None) -> dict[int, list[Pull]]:
    grouped: dict[int, list[Pull]] = defaultdict(list)
    for pull in found:
        if since is None or pull.at >= since:
            grouped[pull.calendar_id].append(pull)
    return grouped


def gaps(series: list[Pull]) -> list[float]:
    """Idle time between the end of each pull and the start of the next one."""
    return [(b.started - a.at).total_seconds() for a, b in pairwise(series)]


def every_calendar_pulled(
    replicas: list[DaemonProcess], times: int, since: datetime | None = None
) -> bool:
    grouped = by_calendar(pulls(replicas), since)
    return len(grouped) == REPLICA_CALENDARS and all(len(s) >= times for s in grouped.values())


def assert_pulled_once_per_interval(grouped: dict[int, list[Pull]]) -> None:
    for calendar_id, series in grouped.items():
        for gap in gaps(series):
            assert gap >= MIN_GAP, f"calendar {calendar_id} pulled again after {gap:.2f}s idle"
            assert gap <= MAX_GAP, f"calendar {calendar_id} waited {gap:.2f}s for a pull"


def leases_of(db: Database, owner: str) -> dict[int, datetime]:
    with db.session() as session:
        rows = session.query(Calendar).filter(Calendar.lease_owner == owner)
        return {row.id: row.lease_expires for row in rows if row.lease_expires}


def replica_config(tmp_path: Path) -> Path:
    return write_config(
        tmp_path / "replica.toml",
        {
            "daemon": {
                "sync_check_seconds": 1,
                "lease_seconds": REPLICA_LEASE,
                "batch_size": 20,
                "network_workers": 10,
                "workers": 3,
                "upgrade_schema": False,
                "shutdown_timeout_seconds": 2,
            },
            "http": {"enabled": False},
            "sync": {"interval_seconds": REPLICA_INTERVAL},
        },
    )


@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRES_URL, reason="SYNCD_TEST_POSTGRES_URL is not set")
def test_three_replicas_share_sixty_calendars_and_take_over_a_killed_ones(
    tmp_path: Path,
    postgres_schema_url: str,
    dav: DavServer,
    proxy: TcpProxy,
    password_file: Path,
    processes: SyncdProcesses,
) -> None:
    url = postgres_schema_url
    seed_world(url)
    for index in range(REPLICA_CALENDARS):
        make_calendar(dav, f"cal{index:02d}")
    config = replica_config(tmp_path)
    connect_calendar(config, url, proxy, dav, password_file)
    replicas = processes.start(config, url, count=3)
    db = Database(url)
    try:
        # Every calendar is pulled once per interval, by one replica at a time; all share.
        wait_until(lambda: every_calendar_pulled(replicas, 4), 45, "four pulls of each")
        shared = pulls(replicas)
        # The first (full) pulls of 60 calendars by 3 starting processes end late: skip them.
        assert_pulled_once_per_interval(
            {calendar_id: series[1:] for calendar_id, series in by_calendar(shared).items()}
        )
        assert {pull.replica for pull in shared} == {0, 1, 2}

        # A replica dies (SIGKILL) while it holds leases: no one else pulls those calendars
        # until the leases expire, then the survivors take them over.
        victim, survivors = replicas[0], replicas[1:]
        owner = victim.owner()
        assert owner is not None
        proxy.hold("REPORT")  # pulls stall, leases stay taken
        wait_until(lambda: bool(leases_of(db, owner)), 15, "the victim to hold leases")
        victim.kill()
        killed_at = datetime.now(UTC)
        orphaned = leases_of(db, owner)
        proxy.release()
        assert orphaned

        last_expiry = max(orphaned.values())
        wait_until(
            lambda: every_calendar_pulled(survivors, 2, since=last_expiry),
            REPLICA_LEASE + 25,
            "the survivors to pull every calendar",
        )
        after = by_calendar(pulls(survivors), since=killed_at)
        for calendar_id, expires in orphaned.items():
            first = after[calendar_id][0].started
            assert expires <= first <= expires + timedelta(seconds=CHECK_WAIT), calendar_id
        assert_pulled_once_per_interval(by_calendar(pulls(survivors), since=last_expiry))
        for survivor in survivors:
            assert survivor.stop() == 0
    finally:
        db.dispose()


# -- 4. a calendar server outage --------------------------------------------------------------

OUTAGE_INTERVAL = 1  # [sync] interval_seconds: failures wait 1, 2, 4 ... intervals


def slot_hours(config: Path, url: str) -> set[int]:
    """Tomorrow's bookable start hours (UTC) for ana, from `syncd slots`."""
    output = syncd_cli(
        config, url, "slots", "intro", "--tz", "UTC", "--mentor", "ana",
        "--from", TOMORROW.isoformat(), "--days", "1", "--json",
    )  # fmt: skip
    return {datetime.fromisoformat(slot["start"]).hour for slot in json.loads(output)}


@dataclass(frozen=True)
class PullState:
    observed: datetime
    failures: int
    next_sync_at: datetime | None
    last_success: datetime | None


def pull_state(db: Database) -> PullState:
    with db.session() as session:
        calendar = session.query(Calendar).one()
        return PullState(
            datetime.now(UTC),
            calendar.consecutive_failures,
            calendar.next_sync_at,
            calendar.last_success,
        )


def watch_failures(db: Database, up_to: int, timeout: float) -> list[PullState]:
    """Poll the calendar until it failed `up_to` times in a row; each new failure's state."""
    seen: list[PullState] = []
    deadline = time.monotonic() + timeout
    while not seen or seen[-1].failures < up_to:
        assert time.monotonic() < deadline, f"only {len(seen)} failure(s) seen"
        state = pull_state(db)
        if state.failures > (seen[-1].failures if seen else 0):
            seen.append(state)
        time.sleep(0.05)
    return seen


def assert_backs_off(failures: list[PullState]) -> None:
    """After failure n the next try waits interval * 2**(n-1) (±10 % jitter)."""
    assert [state.failures for state in failures] == [1, 2, 3]
    for state in failures:
        assert state.next_sync_at is not None
        wait = (state.next_sync_at - state.observed).total_seconds()
        base = OUTAGE_INTERVAL * 2 ** (state.failures - 1)
        assert base * 0.9 - 0.5 <= wait <= base * 1.1, (state.failures, wait)


def test_a_calendar_server_outage_serves_cached_slots_backs_off_and_recovers(
    tmp_path: Path,
    sqlite_url: str,
    database: Database,
    dav: DavServer,
    proxy: TcpProxy,
    password_file: Path,
    processes: SyncdProcesses,
) -> None:
    calendar_url = make_calendar(dav, "work")
    put_object(dav, f"{calendar_url}morning.ics", timed_event("morning", TOMORROW, 10))
    listen = f"127.0.0.1:{free_port()}"
    config = write_config(
        tmp_path / "outage.toml",
        {
            "daemon": {"sync_check_seconds": 0.5, "lease_seconds": 5},
            "http": {"listen": listen},
            "sync": {"interval_seconds": OUTAGE_INTERVAL},
        },
    )
    connect_calendar(config, sqlite_url, proxy, dav, password_file)
    [daemon] = processes.start(config, sqlite_url)
    wait_until(lambda: pull_state(database).last_success is not None, 15, "the first pull")
    assert {9, 11} <= slot_hours(config, sqlite_url) and 10 not in slot_hours(config, sqlite_url)

    proxy.down()
    went_down = datetime.now(UTC)
    put_object(dav, f"{calendar_url}afternoon.ics", timed_event("afternoon", TOMORROW, 13))
    failures = watch_failures(database, 3, timeout=25)

    assert_backs_off(failures)
    assert daemon.process.poll() is None and answers(f"http://{listen}/")
    assert httpx.get(f"http://{listen}/readyz", timeout=5).status_code == 200
    cached = slot_hours(config, sqlite_url)
    assert 10 not in cached and 13 in cached  # the cache still blocks; nothing new is known

    proxy.up()  # the same port again
    wait_until(lambda: _recovered(pull_state(database), went_down), 20, "the pull after the outage")
    assert 13 not in slot_hours(config, sqlite_url)
    assert daemon.stop() == 0


def _recovered(state: PullState, since: datetime) -> bool:
    return state.failures == 0 and state.last_success is not None and state.last_success > since


# -- 5. a Google calendar through the fake Calendar API ------------------------------------------


def test_google_calendar_gets_exactly_one_event_through_book_reschedule_and_cancel(
    tmp_path: Path,
    sqlite_url: str,
    database: Database,
    smtp: SmtpTestServer,
    processes: SyncdProcesses,
) -> None:
    with FakeGoogle() as google:
        google.add_calendar("ana@example.org", time_zone="UTC", primary=True)
        grant = {
            "type": "authorized_user",
            "client_id": "client-1",
            "client_secret": "s3cret",
            "refresh_token": google.issue_refresh_token("client-1"),
        }
        token_file = tmp_path / "ana-google.json"
        token_file.write_text(json.dumps(grant))
        config = outbox_config(tmp_path, smtp)
        with config.open("a", encoding="utf-8") as handle:
            handle.write(
                f'[google]\napi_endpoint = "{google.api_endpoint}"\ntoken_uri = "{google.token_uri}"\n'
            )
        syncd_cli(
            config, sqlite_url, "calendar", "add", "ana", "google",
            "--token-file", str(token_file), "--destination",
        )  # fmt: skip
        daemon = processes.start(config, sqlite_url)[0]
        setup = OutboxSetup(config, sqlite_url, "ana@example.org")

        booking_id = book(setup, hour=10)
        wait_outbox_done(database, booking_id)
        [event] = google.stored_events("ana@example.org")
        assert event["id"] == booking_id  # the deterministic id: a retry can only hit 409
        assert event["start"]["dateTime"].startswith(f"{TOMORROW.isoformat()}T10:00:00")

        syncd_cli(config, sqlite_url, "reschedule", booking_id, "--start", f"{TOMORROW}T12:00:00Z")
        wait_outbox_done(database, booking_id)
        [moved] = google.stored_events("ana@example.org")
        assert moved["id"] == booking_id
        assert moved["start"]["dateTime"].startswith(f"{TOMORROW.isoformat()}T12:00:00")

        syncd_cli(config, sqlite_url, "cancel", booking_id, "--by", "mentor")
        wait_outbox_done(database, booking_id)
        assert google.stored_events("ana@example.org") == []
        methods = [invite_of(mail)[3] for mail in smtp.messages]
        assert methods == ["REQUEST", "REQUEST", "CANCEL"]
        assert daemon.stop() == 0
