"""Draining the outbox: write-back to a real Radicale, exactly once across a crash; invites by
SMTP to a real aiosmtpd server; fast engine cases with the in-memory connector."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as email_policy
from pathlib import Path
from typing import Any

import icalendar
import pytest

import syncd.outbox as outbox
from connectors.base import AuthError, TransientError
from connectors.caldav import CalDAVConnector
from connectors.memory import MemoryConnector
from syncd.booking import BookingRequest, BookingService
from syncd.config import Config
from syncd.errors import BookingRefused
from syncd.identity import booking_uid
from syncd.mailer import PermanentMailError
from syncd.outbox import mail_folder, write_eml
from syncd.store import calendars as calendar_store
from syncd.store import repo
from syncd.store.db import Database
from syncd.store.models import Booking, OutboxItem
from tests.servers import DavServer, make_calendar, radicale_server
from tests.smtp_server import running_smtp_server
from tests.test_sync import NOW, _book, add_calendar
from tests.test_webhooks import SECRET as WEBHOOK_SECRET
from tests.test_webhooks import Receiver, receiver  # noqa: F401 - the fixture

LEASE = timedelta(minutes=5)
AFTER_LEASE = NOW + LEASE + timedelta(seconds=1)
NO_INVITES = Config(sections={"invites": {"enabled": False}})


def drain(
    db: Database, factory: Any, now: datetime = NOW, config: Config = NO_INVITES, **kw: Any
) -> int:
    return outbox.drain_once(
        db, config, now=now, owner="test", connector_factory=factory, lease=LEASE, **kw
    )


def items(db: Database, booking_id: str) -> list[OutboxItem]:
    with db.session() as session:
        return list(repo.outbox_items(session, booking_id))


def booking(db: Database, booking_id: str) -> Booking:
    with db.session() as session:
        found = repo.get_booking(session, booking_id)
        assert found is not None
        return found


@pytest.fixture
def radicale() -> Iterator[DavServer]:
    with radicale_server() as server:
        yield server


def connect(server: DavServer) -> CalDAVConnector:
    user, password = server.auth or (None, None)
    return CalDAVConnector(server.principal_url, user, password, timeout=10.0)


def events_on(server: DavServer, url: str) -> list[Any]:
    connector = connect(server)
    try:
        changes = connector.pull(url, None)
    finally:
        connector.close()
    found: list[Any] = []
    for item in changes.upserts:
        found += icalendar.Calendar.from_ical(item.data).walk("VEVENT")
    return found


# -- write-back to Radicale --------------------------------------------------------------------


def test_booking_event_lands_once_in_the_destination_calendar(
    world: Database, radicale: DavServer
) -> None:
    url = make_calendar(radicale, "work")
    add_calendar(world, remote_id=url, url=radicale.principal_url, destination=True)
    with world.write_session() as session:
        mentor = repo.get_mentor(session, "ana")
        assert mentor is not None
        mentor.meeting_url = "https://meet.example.org/ana"
    booked = _book(world, "2027-03-01T10:00:00Z")
    assert drain(world, lambda _a: connect(radicale)) == 2
    [event] = events_on(radicale, url)
    assert str(event["UID"]) == booking_uid(booked.id)
    assert str(event["SUMMARY"]) == "Intro call with Kim"
    assert "https://meet.example.org/ana" in str(event["DESCRIPTION"])
    assert str(event["ORGANIZER"]) == "mailto:ana@example.org"
    assert str(event["ATTENDEE"]) == "mailto:kim@example.org"
    stored = booking(world, booked.id)
    assert stored.event_ref and stored.event_ref.endswith(f"{booked.id}.ics") and stored.event_etag
    assert all(item.status == "done" for item in items(world, booked.id))


def test_crash_between_put_and_commit_never_creates_a_second_event(
    world: Database, radicale: DavServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = make_calendar(radicale, "work")
    add_calendar(world, remote_id=url, url=radicale.principal_url, destination=True)
    booked = _book(world, "2027-03-01T10:00:00Z")

    def crash(*_args: Any) -> None:
        raise RuntimeError("power cut after the PUT, before the commit")

    with monkeypatch.context() as patch:
        patch.setattr(outbox, "store_event_ref", crash)
        with pytest.raises(RuntimeError):
            drain(world, lambda _a: connect(radicale))
    assert len(events_on(radicale, url)) == 1  # the PUT happened
    assert booking(world, booked.id).event_ref is None  # ...but was never recorded
    assert drain(world, lambda _a: connect(radicale), now=NOW) == 0  # still leased
    assert drain(world, lambda _a: connect(radicale), now=AFTER_LEASE) == 2  # lease expired: retry
    [event] = events_on(radicale, url)
    assert str(event["UID"]) == booking_uid(booked.id)
    assert booking(world, booked.id).event_ref
    assert [item.status for item in items(world, booked.id)] == ["done", "done"]


def test_crash_then_reschedule_updates_the_existing_event(
    world: Database, radicale: DavServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = make_calendar(radicale, "work")
    add_calendar(world, remote_id=url, url=radicale.principal_url, destination=True)
    booked = _book(world, "2027-03-01T10:00:00Z")
    with monkeypatch.context() as patch:
        patch.setattr(
            outbox, "store_event_ref", lambda *_a: (_ for _ in ()).throw(RuntimeError("crash"))
        )
        with pytest.raises(RuntimeError):
            drain(world, lambda _a: connect(radicale))
    BookingService(world).reschedule(
        booked.id, datetime.fromisoformat("2027-03-01T13:00:00+00:00"), now=NOW
    )
    drain(world, lambda _a: connect(radicale), now=AFTER_LEASE)
    [event] = events_on(radicale, url)
    assert event.decoded("DTSTART") == datetime.fromisoformat("2027-03-01T13:00:00+00:00")
    assert event.decoded("SEQUENCE") == 1


def test_cancel_deletes_the_event(world: Database, radicale: DavServer) -> None:
    url = make_calendar(radicale, "work")
    add_calendar(world, remote_id=url, url=radicale.principal_url, destination=True)
    booked = _book(world, "2027-03-01T10:00:00Z")
    drain(world, lambda _a: connect(radicale))
    BookingService(world).cancel(booked.id, by="student", reason=None, now=NOW)
    drain(world, lambda _a: connect(radicale))
    assert events_on(radicale, url) == []
    assert booking(world, booked.id).event_ref is None


# -- engine cases with the in-memory connector -------------------------------------------------


@pytest.fixture
def memory(world: Database) -> MemoryConnector:
    connector = MemoryConnector()
    connector.add_calendar("cal")
    add_calendar(world, remote_id="cal", destination=True)
    return connector


def test_stale_items_are_skipped_without_calls(world: Database, memory: MemoryConnector) -> None:
    booked = _book(world, "2027-03-01T10:00:00Z")
    BookingService(world).reschedule(
        booked.id, datetime.fromisoformat("2027-03-01T13:00:00+00:00"), now=NOW
    )
    drain(world, lambda _a: memory)
    # Only the newer item wrote: a create, then (sequence > 0, so an unrecorded earlier write
    # may exist) an update to the current state.
    assert memory.calls == ["put_event", "put_event"]
    [ics] = memory.objects("cal").values()
    assert "SEQUENCE:1" in ics and "DTSTART:20270301T130000Z" in ics
    notes = [item.last_error for item in items(world, booked.id) if item.kind == "calendar_upsert"]
    assert notes == ["superseded by a newer item", None]


def test_cancelled_events_can_be_marked_instead_of_deleted(
    world: Database, memory: MemoryConnector
) -> None:
    booked = _book(world, "2027-03-01T10:00:00Z")
    drain(world, lambda _a: memory)
    BookingService(world).cancel(booked.id, by="mentor", reason=None, now=NOW)
    config = Config(
        sections={"invites": {"enabled": False}, "daemon": {"cancelled_events": "mark"}}
    )
    drain(world, lambda _a: memory, config=config)
    [ics] = memory.objects("cal").values()
    assert "STATUS:CANCELLED" in ics and "SEQUENCE:1" in ics


def test_no_destination_is_done_with_a_note(world: Database) -> None:
    booked = _book(world, "2027-03-01T10:00:00Z")
    drain(world, lambda _a: pytest.fail("no connector is needed"))
    [upsert] = [item for item in items(world, booked.id) if item.kind == "calendar_upsert"]
    assert upsert.status == "done" and upsert.last_error and "no destination" in upsert.last_error


def test_transient_errors_retry_and_auth_errors_fail(
    world: Database, memory: MemoryConnector
) -> None:
    booked = _book(world, "2027-03-01T10:00:00Z")
    memory.fail_next(TransientError("503"))
    drain(world, lambda _a: memory)
    [upsert] = [i for i in items(world, booked.id) if i.kind == "calendar_upsert"]
    assert (
        upsert.status == "pending"
        and upsert.next_attempt_at > NOW
        and "503" in (upsert.last_error or "")
    )
    memory.fail_next(AuthError("password changed"))
    drain(world, lambda _a: memory, now=NOW + timedelta(hours=1))
    [upsert] = [i for i in items(world, booked.id) if i.kind == "calendar_upsert"]
    assert upsert.status == "failed" and "password changed" in (upsert.last_error or "")
    # The mentor reconnects: the write is queued again and lands.
    with world.write_session() as session:
        assert calendar_store.requeue_failed_writes(session, "ana", NOW + timedelta(hours=2)) == 1
    drain(world, lambda _a: memory, now=NOW + timedelta(hours=2))
    [upsert] = [i for i in items(world, booked.id) if i.kind == "calendar_upsert"]
    assert upsert.status == "done"
    assert len(memory.objects("cal")) == 1


# -- invites -----------------------------------------------------------------------------------


def test_invite_is_emailed_to_the_student(world: Database) -> None:
    booked = _book(world, "2027-03-01T10:00:00Z")
    with running_smtp_server() as smtp:
        config = Config(
            sections={
                "smtp": {"host": smtp.host, "port": smtp.port, "timeout_seconds": 5},
                "invites": {"organizer": "bookings@example.org"},
            }
        )
        drain(world, lambda _a: pytest.fail("no calendar"), config=config)
        [mail] = smtp.wait_for_messages(1)
    assert mail.rcpt_tos == ("kim@example.org",)
    assert booking_uid(booked.id) in mail.raw.decode()
    assert "METHOD:REQUEST" in mail.raw.decode()
    assert all(item.status == "done" for item in items(world, booked.id))


def test_transient_mail_failure_retries_and_permanent_fails(world: Database) -> None:
    booked = _book(world, "2027-03-01T10:00:00Z")
    with running_smtp_server() as smtp:
        config = Config(
            sections={"smtp": {"host": smtp.host, "port": smtp.port, "timeout_seconds": 5}}
        )
        smtp.reject_next_rcpt(451)
        drain(world, lambda _a: pytest.fail("no calendar"), config=config)
        [invite] = [i for i in items(world, booked.id) if i.kind == "invite"]
        assert invite.status == "pending" and invite.attempts == 1
        later = NOW + timedelta(hours=1)
        drain(world, lambda _a: pytest.fail("no calendar"), now=later, config=config)
        [invite] = [i for i in items(world, booked.id) if i.kind == "invite"]
        assert invite.status == "done" and len(smtp.messages) == 1

    def refuse(_message: EmailMessage) -> None:
        raise PermanentMailError("550 no such user")

    BookingService(world).cancel(booked.id, by="mentor", reason=None, now=NOW)
    drain(world, lambda _a: pytest.fail("no calendar"), mailer=refuse, config=Config())
    cancel = [i for i in items(world, booked.id) if i.kind == "invite"][-1]
    assert cancel.status == "failed" and "550" in (cancel.last_error or "")


def test_without_smtp_invites_are_kept_as_eml_files(world: Database, tmp_path: Path) -> None:
    booked = _book(world, "2027-03-01T10:00:00Z")
    config = Config(
        sections={
            "invites": {"organizer": "bookings@example.org", "mail_dir": str(tmp_path / "mail")}
        }
    )
    drain(world, lambda _a: pytest.fail("no calendar"), config=config)
    [eml] = list((tmp_path / "mail").glob("*.eml"))
    message = message_from_bytes(eml.read_bytes(), policy=email_policy)
    assert message["To"].addresses[0].addr_spec == "kim@example.org"
    assert booking_uid(booked.id) in eml.read_text()
    # A resend of the same message (e.g. after a crash) replaces it: still one file.
    first = eml.read_bytes()
    write_eml(tmp_path / "mail", message_from_bytes(first, policy=email_policy))  # type: ignore[arg-type]
    assert [p.name for p in (tmp_path / "mail").glob("*.eml")] == [eml.name]


def test_default_mail_folder_is_in_the_state_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    assert mail_folder(Config()) == tmp_path / "state" / "mail"


# -- webhooks -----------------------------------------------------------------------------------


def test_booking_events_reach_the_webhook_signed_and_in_order(
    world: Database,
    receiver: Receiver,  # noqa: F811 - the fixture imported from test_webhooks
    tmp_path: Path,
) -> None:
    from syncd import directory, quotas

    with world.write_session() as session:
        quotas.grant(
            session,
            directory.require_student(session, "kim"),
            service=directory.require_service(session, "intro"),
            sessions=None,
            today=NOW.date(),
        )
    seen: list[tuple[str, str]] = []
    service = BookingService(
        world, webhooks=True, observer=lambda event, detail: seen.append((event, detail))
    )
    booked = service.book(
        BookingRequest("intro", "ana", "kim", datetime.fromisoformat("2027-03-01T10:00:00Z")),
        now=NOW,
    )
    service.reschedule(booked.id, datetime.fromisoformat("2027-03-01T12:00:00Z"), now=NOW)
    service.cancel(booked.id, by="student", reason=None, now=NOW)
    secret = tmp_path / "webhook-secret"
    secret.write_text(WEBHOOK_SECRET + "\n")
    config = Config(
        sections={
            "webhooks": {"url": receiver.url, "secret_file": str(secret)},
            **NO_INVITES.sections,
        }
    )
    drain(world, lambda _a: pytest.fail("no calendar"), config=config)
    assert [r["event"] for r in receiver.received] == [
        "booking.created",
        "booking.rescheduled",
        "booking.cancelled",
    ]
    bodies = [r["body"] for r in receiver.received]
    assert [b["booking"]["start"] for b in bodies] == [  # type: ignore[index]
        "2027-03-01T10:00:00Z",
        "2027-03-01T12:00:00Z",
        "2027-03-01T12:00:00Z",
    ]
    assert bodies[2]["booking"]["status"] == "cancelled"  # type: ignore[index]
    assert receiver.rejected == 0
    assert seen == [("booked", booked.id), ("rescheduled", booked.id), ("cancelled", booked.id)]
    webhook_items = [i for i in items(world, booked.id) if i.kind == "webhook"]
    assert [i.status for i in webhook_items] == ["done", "done", "done"]


def test_refused_bookings_are_observed_with_their_reason(world: Database) -> None:
    seen: list[tuple[str, str]] = []
    service = BookingService(world, observer=lambda event, detail: seen.append((event, detail)))
    with pytest.raises(BookingRefused):
        service.book(
            BookingRequest("intro", "ana", "kim", datetime.fromisoformat("2027-03-01T10:00:00Z")),
            now=NOW,
        )
    assert seen == [("refused", "quota_exhausted")]
