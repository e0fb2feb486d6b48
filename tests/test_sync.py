"""The sync engine against real Radicale and Xandikos, FakeGoogle, and the in-memory connector."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from connectors.base import AuthError, TransientError
from connectors.caldav import CalDAVConnector, event_to_ical
from connectors.memory import MemoryConnector
from syncd import slots
from syncd.booking import BookingRequest, BookingService
from syncd.config import Config
from syncd.daemon import DaemonSettings, JobContext
from syncd.identity import booking_uid
from syncd.ops import Metrics
from syncd.outbox import _BookingContext, event_spec
from syncd.secrets import SecretBox
from syncd.store import calendars as store
from syncd.store.db import Database
from syncd.store.models import BusyInterval, Calendar, CalendarAccount
from syncd.sync import live_check_for, sync_calendar, sync_due_calendars, sync_now, sync_window
from tests.fake_google import FakeGoogle
from tests.servers import (
    DavServer,
    delete_object,
    make_calendar,
    put_object,
    radicale_server,
    xandikos_server,
)

NOW = datetime(2027, 2, 28, 12, tzinfo=UTC)  # a Sunday; the world's services look 14 days ahead
HORIZON = 14
KEY = "k" * 44  # secret key material for tests
UTC_Z = "%Y%m%dT%H%M%SZ"
# Server quirks, in one table: Radicale answers 400 to invalid iCalendar, Xandikos stores it.
STORES_INVALID_ICALENDAR = {"radicale": False, "xandikos": True}


# -- helpers shared with the other test modules -----------------------------------------------


def ics(uid: str, body: str) -> str:
    """A VCALENDAR with one VEVENT; `body` holds its DTSTART/DTEND/RRULE/... lines."""
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//syncd tests//EN",
        "BEGIN:VEVENT",
        f"UID:{uid}",
        "DTSTAMP:20270101T000000Z",
        *[line.strip() for line in body.strip().splitlines()],
        "END:VEVENT",
        "END:VCALENDAR",
        "",
    ]
    return "\r\n".join(lines)


def timed(uid: str, start: datetime, minutes: int = 60, extra: str = "") -> str:
    end = start + timedelta(minutes=minutes)
    return ics(uid, f"DTSTART:{start:{UTC_Z}}\nDTEND:{end:{UTC_Z}}\n{extra}")


def add_calendar(
    db: Database,
    *,
    mentor: str = "ana",
    provider: str = "caldav",
    remote_id: str = "cal",
    url: str | None = None,
    username: str | None = None,
    secret: str | None = None,
    timezone: str | None = None,
    destination: bool = False,
) -> int:
    with db.write_session() as session:
        account = CalendarAccount(
            mentor_id=mentor, provider=provider, url=url, username=username, secret=secret
        )
        session.add(account)
        session.flush()
        calendar = Calendar(
            mentor_id=mentor,
            account_id=account.id,
            provider=provider,
            remote_id=remote_id,
            name=remote_id,
            timezone=timezone,
            is_destination=destination,
        )
        session.add(calendar)
        session.flush()
        return calendar.id


def busy(db: Database, calendar_id: int) -> list[tuple[datetime, datetime]]:
    with db.session() as session:
        return [(row.start, row.end) for row in store.busy_rows(session, calendar_id)]


def rows(db: Database, calendar_id: int) -> list[BusyInterval]:
    with db.session() as session:
        return list(store.busy_rows(session, calendar_id))


def calendar_row(db: Database, calendar_id: int) -> Calendar:
    with db.session() as session:
        found = store.get_calendar(session, calendar_id)
        assert found is not None
        return found


def at(day: int, hour: int, minute: int = 0, month: int = 3) -> datetime:
    return datetime(2027, month, day, hour, minute, tzinfo=UTC)


@pytest.fixture(params=["radicale", "xandikos"])
def dav(request: pytest.FixtureRequest) -> Iterator[DavServer]:
    server = radicale_server if request.param == "radicale" else xandikos_server
    with server() as running:
        yield running


def dav_connector(server: DavServer) -> CalDAVConnector:
    user, password = server.auth or (None, None)
    return CalDAVConnector(server.principal_url, user, password, timeout=10.0)


class DavCalendar:
    """A real calendar on a test server, connected in the database and pulled on demand."""

    def __init__(self, db: Database, server: DavServer, name: str = "work", tz: str | None = None):
        self.db, self.server = db, server
        self.url = make_calendar(server, name, timezone=tz)
        self.id = add_calendar(db, remote_id=self.url, url=server.principal_url)
        self.connector = dav_connector(server)

    def put(self, name: str, data: str) -> None:
        put_object(self.server, f"{self.url}{name}.ics", data)

    def delete(self, name: str) -> None:
        delete_object(self.server, f"{self.url}{name}.ics")

    def sync(self, now: datetime = NOW) -> Any:
        return sync_calendar(self.db, self.id, self.connector, now=now, horizon_days=HORIZON)


@pytest.fixture
def cal(world: Database, dav: DavServer) -> Iterator[DavCalendar]:
    calendar = DavCalendar(world, dav)
    yield calendar
    calendar.connector.close()


# -- rules, against both real servers ----------------------------------------------------------


def test_weekly_recurring_event_blocks_every_occurrence_in_the_window(cal: DavCalendar) -> None:
    cal.put(
        "weekly",
        ics("weekly", "DTSTART:20270301T100000Z\nDTEND:20270301T110000Z\nRRULE:FREQ=WEEKLY"),
    )
    cal.sync()
    # Window: 2027-02-27 .. 2027-03-16 (now + 14 days + 1, whole days).
    assert busy(cal.db, cal.id) == [(at(d, 10), at(d, 11)) for d in (1, 8, 15)]


def test_all_day_event_is_read_in_the_calendars_zone(world: Database, dav: DavServer) -> None:
    berlin = DavCalendar(world, dav, "berlin", tz="Europe/Berlin")
    berlin.put("holiday", ics("holiday", "DTSTART;VALUE=DATE:20270302\nDTEND;VALUE=DATE:20270303"))
    berlin.sync()
    assert busy(world, berlin.id) == [(at(1, 23), at(2, 23))]  # Berlin midnight is 23:00Z
    assert calendar_row(world, berlin.id).timezone == "Europe/Berlin"


def test_transparent_cancelled_and_declined_events_do_not_block(cal: DavCalendar) -> None:
    cal.put("free", timed("free", at(1, 9), extra="TRANSP:TRANSPARENT"))
    cal.put("cancelled", timed("cancelled", at(1, 11), extra="STATUS:CANCELLED"))
    declined = "ATTENDEE;PARTSTAT=DECLINED:mailto:ANA@example.org"
    cal.put("declined", timed("declined", at(1, 13), extra=declined))
    cal.put("busy", timed("busy", at(1, 15)))
    cal.sync()
    assert busy(cal.db, cal.id) == [(at(1, 15), at(1, 16))]


def test_edit_moves_the_busy_row_and_delete_removes_it(cal: DavCalendar) -> None:
    cal.put("meeting", timed("meeting", at(2, 9)))
    cal.put("other", timed("other", at(3, 9)))
    cal.sync()
    cal.put("meeting", timed("meeting", at(2, 14)))
    cal.delete("other")
    result = cal.sync()
    assert not result.full
    assert busy(cal.db, cal.id) == [(at(2, 14), at(2, 15))]


def test_stale_sync_token_triggers_a_full_resync_without_duplicates(cal: DavCalendar) -> None:
    cal.put("a", timed("a", at(2, 9)))
    cal.put(
        "weekly",
        ics("weekly", "DTSTART:20270301T100000Z\nDTEND:20270301T110000Z\nRRULE:FREQ=WEEKLY"),
    )
    cal.sync()
    before = busy(cal.db, cal.id)
    with cal.db.write_session() as session:
        calendar = store.get_calendar(session, cal.id)
        assert calendar is not None
        calendar.sync_state = "sync:http://127.0.0.1/forgotten-token/1"
    result = cal.sync()
    assert result.full
    assert busy(cal.db, cal.id) == before
    with cal.db.session() as session:
        assert len(store.calendar_objects(session, cal.id)) == 2


def test_malformed_object_is_skipped_and_the_rest_syncs(
    cal: DavCalendar, caplog: pytest.LogCaptureFixture
) -> None:
    if not STORES_INVALID_ICALENDAR[cal.server.kind]:
        pytest.skip(f"{cal.server.kind} refuses to store invalid iCalendar")
    broken = ics("broken", "DTSTART:not-a-date\nDTEND:20270301T110000Z")
    cal.put("broken", broken)
    cal.put("good", timed("good", at(1, 9)))
    with caplog.at_level(logging.WARNING, logger="syncd.sync"):
        result = cal.sync()
    assert [ref.rsplit("/", 1)[-1] for ref in result.malformed] == ["broken.ics"]
    assert busy(cal.db, cal.id) == [(at(1, 9), at(1, 10))]
    assert "broken.ics" in caplog.text
    with cal.db.session() as session:
        errors = {
            o.ref.rsplit("/", 1)[-1]: o.error for o in store.calendar_objects(session, cal.id)
        }
    assert errors["good.ics"] is None and errors["broken.ics"]


def test_own_booking_event_does_not_count_twice(world: Database, dav: DavServer) -> None:
    booked = _book(world, "2027-03-01T10:00:00Z")
    cal = DavCalendar(world, dav)
    before = _slot_starts(world)
    cal.put(booked.id, event_to_ical(event_spec(_context(world, booked.id))))
    cal.sync()
    [row] = rows(world, cal.id)
    assert row.booking_id == booked.id and row.uid == booking_uid(booked.id)
    assert _slot_starts(world) == before
    assert at(1, 10) not in before and at(1, 11, 15) in before


def test_slots_exclude_busy_time_pulled_from_a_real_radicale_calendar(world: Database) -> None:
    with radicale_server() as server:
        cal = DavCalendar(world, server, tz="Europe/Madrid")
        free = _slot_starts(world)
        assert at(1, 10) in free and at(1, 11) in free
        cal.put(
            "lunch",
            ics(
                "lunch",
                "DTSTART;TZID=Europe/Madrid:20270301T110000\nDTEND;TZID=Europe/Madrid:20270301T120000",
            ),
        )
        cal.sync()
        cal.connector.close()
    after = _slot_starts(world)
    # Busy 10:00-11:00Z; intro lasts 60 min plus a 15 min buffer after.
    assert at(1, 10) not in after and at(1, 9) not in after and at(1, 9, 45) not in after
    assert at(1, 8, 45) in after and at(1, 11) in after  # 08:45 + 75 min ends at 10:00 sharp
    assert after == [s for s in free if not (at(1, 8, 45) < s < at(1, 11))]


# -- the window rolls forward (in-memory connector counts calls) -------------------------------


def test_window_rolls_forward_by_re_expanding_stored_objects_without_refetching(
    world: Database,
) -> None:
    memory = MemoryConnector()
    memory.add_calendar("cal")
    calendar_id = add_calendar(world)
    memory.store(
        "cal",
        "weekly.ics",
        ics("weekly", "DTSTART:20270301T100000Z\nDTEND:20270301T110000Z\nRRULE:FREQ=WEEKLY"),
    )
    memory.store("cal", "later.ics", timed("later", at(24, 9)))
    sync_calendar(world, calendar_id, memory, now=NOW, horizon_days=HORIZON)
    assert busy(world, calendar_id) == [(at(d, 10), at(d, 11)) for d in (1, 8, 15)]
    ten_days_later = NOW + timedelta(days=10)
    result = sync_calendar(world, calendar_id, memory, now=ten_days_later, horizon_days=HORIZON)
    assert memory.calls == ["pull", "pull"]  # no second listing, no object fetched again
    assert result.upserted == 0 and result.reexpanded == 2
    assert (at(22, 10), at(22, 11)) in busy(world, calendar_id)
    assert (at(24, 9), at(24, 10)) in busy(world, calendar_id)
    assert calendar_row(world, calendar_id).window_end == sync_window(ten_days_later, HORIZON).end


def test_same_day_pulls_do_not_re_expand(world: Database) -> None:
    memory = MemoryConnector()
    memory.add_calendar("cal")
    calendar_id = add_calendar(world)
    memory.store(
        "cal",
        "weekly.ics",
        ics("weekly", "DTSTART:20270301T100000Z\nDTEND:20270301T110000Z\nRRULE:FREQ=WEEKLY"),
    )
    sync_calendar(world, calendar_id, memory, now=NOW, horizon_days=HORIZON)
    result = sync_calendar(
        world, calendar_id, memory, now=NOW + timedelta(hours=1), horizon_days=HORIZON
    )
    assert result.reexpanded == 0


def test_memory_stale_state_resync_keeps_exactly_the_current_objects(world: Database) -> None:
    memory = MemoryConnector()
    memory.add_calendar("cal")
    calendar_id = add_calendar(world)
    memory.store("cal", "a.ics", timed("a", at(1, 9)))
    memory.store("cal", "b.ics", timed("b", at(2, 9)))
    sync_calendar(world, calendar_id, memory, now=NOW, horizon_days=HORIZON)
    memory.remove("cal", "b.ics")
    memory.expire_states()
    result = sync_calendar(world, calendar_id, memory, now=NOW, horizon_days=HORIZON)
    assert result.full and memory.calls == ["pull", "pull", "pull"]
    assert busy(world, calendar_id) == [(at(1, 9), at(1, 10))]


# -- the daemon job: leases, failures, needs_reconnect -----------------------------------------


def job_context(db: Database, config: Config, now: datetime = NOW) -> JobContext:
    from concurrent.futures import ThreadPoolExecutor

    return JobContext(
        db=db,
        config=config,
        settings=DaemonSettings(),
        owner="test-owner",
        metrics=Metrics(),
        stop=threading.Event(),
        network=ThreadPoolExecutor(2),
        clock=lambda: now,
    )


def test_auth_error_marks_needs_reconnect_and_other_calendars_keep_syncing(
    world: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNCD_SECRET_KEY", KEY)
    box = SecretBox(KEY)
    with radicale_server(auth=("ana", "right-password")) as server:
        url = make_calendar(server, "work")
        put_object(server, f"{url}a.ics", timed("a", at(1, 9)))
        good = add_calendar(
            world,
            remote_id=url,
            url=server.principal_url,
            username="ana",
            secret=box.encrypt("right-password"),
        )
        bad = add_calendar(
            world,
            remote_id=url,
            url=server.principal_url,
            username="ana",
            secret=box.encrypt("wrong"),
        )
        ctx = job_context(world, Config())
        try:
            assert sync_due_calendars(ctx) == 1
            ctx.clock = lambda: NOW + timedelta(hours=2)
            put_object(server, f"{url}b.ics", timed("b", at(2, 9)))
            assert sync_due_calendars(ctx) == 1  # only the good one is due and pullable
        finally:
            ctx.network.shutdown()
    assert busy(world, good) == [(at(1, 9), at(1, 10)), (at(2, 9), at(2, 10))]
    failed = calendar_row(world, bad)
    assert failed.needs_reconnect and failed.consecutive_failures == 1
    assert failed.last_error and "reconnect" in failed.last_error
    assert busy(world, bad) == []
    assert calendar_row(world, good).last_success == NOW + timedelta(hours=2)


def test_transient_error_backs_off_through_the_lease_release(world: Database) -> None:
    memory = MemoryConnector()
    memory.add_calendar("cal")
    calendar_id = add_calendar(world)
    memory.fail_next(TransientError("server down"))
    [outcome] = sync_now(
        world, Config(), calendar_ids=[calendar_id], now=NOW, factory=lambda _a: memory
    )
    assert outcome.result is None and outcome.error and "server down" in outcome.error
    row = calendar_row(world, calendar_id)
    assert row.consecutive_failures == 1 and row.next_sync_at is not None and row.next_sync_at > NOW
    assert not row.needs_reconnect and row.lease_owner is None
    [again] = sync_now(
        world, Config(), calendar_ids=[calendar_id], now=NOW, factory=lambda _a: memory
    )
    assert again.result is not None and calendar_row(world, calendar_id).consecutive_failures == 0


def test_auth_error_from_memory_connector_sets_account_needs_reconnect(world: Database) -> None:
    memory = MemoryConnector()
    memory.add_calendar("cal")
    calendar_id = add_calendar(world)
    memory.fail_next(AuthError("revoked"))
    sync_now(world, Config(), calendar_ids=[calendar_id], now=NOW, factory=lambda _a: memory)
    with world.session() as session:
        calendar = store.get_calendar(session, calendar_id)
        assert calendar is not None and calendar.account_id is not None
        account = store.get_account(session, calendar.account_id)
        assert calendar.needs_reconnect and account is not None and account.needs_reconnect


# -- Google through FakeGoogle -----------------------------------------------------------------


def test_google_calendar_end_to_end_full_incremental_and_410(
    world: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNCD_SECRET_KEY", KEY)
    now = datetime.now(UTC).replace(microsecond=0)
    start = now + timedelta(days=2)
    with FakeGoogle() as google:
        google.add_calendar("ana@example.org", time_zone="Europe/Berlin", primary=True)
        token = google.issue_refresh_token("client-1")
        config = Config(
            sections={
                "google": {"api_endpoint": google.api_endpoint, "token_uri": google.token_uri}
            }
        )
        grant = {"client_id": "client-1", "client_secret": "s3cret", "refresh_token": token}
        calendar_id = add_calendar(
            world,
            provider="google",
            remote_id="ana@example.org",
            secret=SecretBox(KEY).encrypt(json.dumps(grant)),
        )
        google.put_event("ana@example.org", _google_event("meet1", start))
        google.put_event(
            "ana@example.org",
            {**_google_event("free1", start + timedelta(hours=3)), "transparency": "transparent"},
        )
        day = (now + timedelta(days=3)).date()
        google.put_event(
            "ana@example.org",
            {
                "id": "allday1",
                "start": {"date": day.isoformat()},
                "end": {"date": (day + timedelta(days=1)).isoformat()},
            },
        )

        [first] = sync_now(world, config, calendar_ids=[calendar_id], now=now)
        assert first.result is not None and first.result.full
        berlin_midnight = (
            datetime.combine(day, datetime.min.time()).replace(tzinfo=_berlin()).astimezone(UTC)
        )
        assert busy(world, calendar_id) == [
            (start, start + timedelta(hours=1)),
            (berlin_midnight, berlin_midnight + timedelta(days=1)),
        ]

        google.change_event(
            "ana@example.org",
            "meet1",
            start={"dateTime": _z(start + timedelta(hours=5))},
            end={"dateTime": _z(start + timedelta(hours=6))},
        )
        google.remove_event("ana@example.org", "allday1")
        [second] = sync_now(world, config, calendar_ids=[calendar_id], now=now)
        assert second.result is not None and not second.result.full
        assert busy(world, calendar_id) == [
            (start + timedelta(hours=5), start + timedelta(hours=6))
        ]

        google.expire_sync_tokens()
        [third] = sync_now(world, config, calendar_ids=[calendar_id], now=now)
        assert third.result is not None and third.result.full
        assert busy(world, calendar_id) == [
            (start + timedelta(hours=5), start + timedelta(hours=6))
        ]
        assert calendar_row(world, calendar_id).timezone == "Europe/Berlin"
        # A new connector per pull, but one access token for all three pulls.
        assert len(google.requests_to("POST", "/token")) == 1

        google.revoke_refresh_token(token)
        google.expire_access_tokens()
        [fourth] = sync_now(world, config, calendar_ids=[calendar_id], now=now)
        assert fourth.result is None and calendar_row(world, calendar_id).needs_reconnect


# -- the live check ----------------------------------------------------------------------------


def test_live_check_asks_blocking_calendars(world: Database) -> None:
    memory = MemoryConnector()
    memory.add_calendar("cal")
    memory.store("cal", "a.ics", timed("a", at(1, 9)))
    add_calendar(world)
    check = live_check_for(world, Config(), factory=lambda _a: memory, timeout=5)
    assert check("ana", at(1, 9, 30), at(1, 10)) is False
    assert check("ana", at(1, 10), at(1, 11)) is True
    assert check("ben", at(1, 9), at(1, 10)) is True  # ben has no calendars
    memory.fail_next(TransientError("down"))
    assert check("ana", at(1, 10), at(1, 11)) is None


def test_live_check_is_bounded_by_its_timeout(world: Database) -> None:
    release = threading.Event()

    class Hanging(MemoryConnector):
        def busy(self, calendars: Any, start: datetime, end: datetime) -> Any:
            release.wait(5)
            return []

    add_calendar(world)
    check = live_check_for(world, Config(), factory=lambda _a: Hanging(), timeout=0.2)
    try:
        assert check("ana", at(1, 10), at(1, 11)) is None
    finally:
        release.set()


def test_live_check_refuses_a_booking_over_real_busy_time(world: Database) -> None:
    from syncd import directory, quotas
    from syncd.errors import BookingRefused

    with world.write_session() as session:
        quotas.grant(
            session,
            directory.require_student(session, "kim"),
            service=directory.require_service(session, "intro"),
            sessions=None,
            today=date(2027, 2, 1),
        )
    memory = MemoryConnector()
    memory.add_calendar("cal")
    add_calendar(world)
    memory.store("cal", "new.ics", timed("new", at(1, 10)))  # not pulled yet: only live
    service = BookingService(
        world, live_check=live_check_for(world, Config(), factory=lambda _a: memory)
    )
    with pytest.raises(BookingRefused):
        service.book(BookingRequest("intro", "ana", "kim", at(1, 10)), now=NOW)


def test_live_check_ignores_the_booking_s_own_event_when_it_is_moved(world: Database) -> None:
    memory = MemoryConnector()
    memory.add_calendar("cal")
    memory.store("cal", "own.ics", timed("own", at(1, 10)))  # the booking's event, 10-11
    add_calendar(world)
    check = live_check_for(world, Config(), factory=lambda _a: memory, timeout=5)
    own = (at(1, 10), at(1, 11))
    assert check("ana", at(1, 10, 30), at(1, 11, 30)) is False  # a new booking: it is busy
    assert check("ana", at(1, 10, 30), at(1, 11, 30), own) is True  # moving that very booking
    memory.store("cal", "other.ics", timed("other", at(1, 11)))  # someone else's, 11-12
    assert check("ana", at(1, 10, 30), at(1, 11, 30), own) is False


def test_rescheduling_by_half_an_hour_passes_the_live_check(world: Database) -> None:
    """End to end: the written-back event must not block its own booking's reschedule."""
    from syncd.identity import booking_uid

    booked = _book(world, "2027-03-01T10:00:00Z")
    memory = MemoryConnector()
    memory.add_calendar("cal")
    memory.store("cal", f"{booked.id}.ics", timed(booking_uid(booked.id), at(1, 10)))
    add_calendar(world)
    service = BookingService(
        world, live_check=live_check_for(world, Config(), factory=lambda _a: memory)
    )
    moved = service.reschedule(booked.id, datetime.fromisoformat("2027-03-01T10:30:00Z"), now=NOW)
    assert moved.sequence == 1


# -- helpers -----------------------------------------------------------------------------------


def _book(db: Database, start: str) -> Any:
    from syncd import directory, quotas

    with db.write_session() as session:
        quotas.grant(
            session,
            directory.require_student(session, "kim"),
            service=directory.require_service(session, "intro"),
            sessions=None,
            today=date(2027, 2, 1),
        )
    return BookingService(db).book(
        BookingRequest("intro", "ana", "kim", datetime.fromisoformat(start)), now=NOW
    )


def _context(db: Database, booking_id: str) -> _BookingContext:
    from syncd.outbox import _load_context

    context = _load_context(db, booking_id)
    assert context is not None
    return context


def _slot_starts(db: Database) -> list[datetime]:
    with db.session() as session:
        found = slots.find_slots(
            session,
            "intro",
            tz_name="UTC",
            first_day=date(2027, 3, 1),
            days=1,
            now=NOW,
            mentor_id="ana",
        )
    return [slot.start for slot in found]


def _google_event(event_id: str, start: datetime) -> dict[str, Any]:
    return {
        "id": event_id,
        "summary": event_id,
        "start": {"dateTime": _z(start)},
        "end": {"dateTime": _z(start + timedelta(hours=1))},
    }


def _z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _berlin() -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo("Europe/Berlin")
