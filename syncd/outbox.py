"""Draining the outbox: booking events written back to mentors' calendars, invites emailed.

Each item is claimed with a lease (syncd.store.leases), performed outside any transaction, and
then finished or failed. Exactly-once write-back rests on the deterministic event key (the
booking id): if the process dies between the provider's PUT and our commit, the item is claimed
again after its lease expires and the retried create finds the event already there (CalDAV
If-None-Match 412, Google 409), which the connectors report as success; the drain then brings
the existing event up to date. So a crash can repeat a write, never duplicate an event.

Kinds and payloads (written by syncd.booking):
- "calendar_upsert" {"sequence": n}: create or update the event in the destination calendar.
- "calendar_delete" {"sequence": n}: delete it, or mark it CANCELLED when
  `[daemon] cancelled_events = "mark"`.
- "invite" {"method": "REQUEST"|"CANCEL", "sequence": n}: the iMIP email to the student.
An item whose sequence is older than the booking's is stale (a newer item supersedes it) and
is marked done without any call.

Failures: TransientError / TransientMailError / anything unexpected → retried with backoff
(bounded attempts); AuthError → failed, and the calendar account is marked needs_reconnect;
PermanentMailError, InviteError, NotFound → failed. Every failure is logged with the item id.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import parseaddr
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy.orm import Session

from connectors.base import (
    AuthError,
    Connector,
    ConnectorError,
    EventRef,
    EventSpec,
    NotFound,
    PreconditionFailed,
)
from syncd.calendars import ConnectorFactory, default_factory
from syncd.config import Config, state_directory
from syncd.errors import ConfigError
from syncd.identity import booking_uid
from syncd.invites import InviteDetails, InviteError, Method, build_message
from syncd.mailer import PermanentMailError, SmtpSettings, TransientMailError, send_message
from syncd.secrets import UndecryptableSecret
from syncd.store import calendars as store
from syncd.store import repo
from syncd.store.db import Database
from syncd.store.leases import claim_due_outbox, fail_outbox, finish_outbox
from syncd.store.models import Booking, Calendar, CalendarAccount, OutboxItem
from syncd.webhooks import PermanentDeliveryError, TransientDeliveryError, deliver

if TYPE_CHECKING:
    from syncd.daemon import JobContext

log = logging.getLogger(__name__)

Mailer = Callable[[EmailMessage], None]
BOOKING_ID_KEY = "syncd-booking-id"
DEFAULT_LEASE = timedelta(minutes=5)
DEFAULT_BATCH = 20
_MAX_ROUNDS = 10  # batches per daemon run, so one run cannot hog a worker forever
CANCELLED_EVENT_MODES = ("delete", "mark")


# -- outcomes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Done:
    note: str | None = None


@dataclass(frozen=True)
class Retry:
    error: str


@dataclass(frozen=True)
class Failed:
    error: str


Outcome = Done | Retry | Failed


@dataclass(frozen=True)
class EventWritten:
    """A calendar write that must be recorded on the booking."""

    calendar_id: int
    ref: EventRef | None  # None: the event is gone


# -- draining ---------------------------------------------------------------------------------


def drain_outbox(ctx: JobContext) -> int:
    """Daemon job: drain due outbox items in batches until none is due; returns how many."""
    drainer = Drainer(ctx.db, ctx.config)
    handled = 0
    for _ in range(_MAX_ROUNDS):
        if ctx.stop.is_set():
            break
        count = drainer.drain_once(
            now=ctx.now(),
            owner=ctx.owner,
            lease=ctx.settings.lease,
            limit=ctx.settings.batch_size,
        )
        handled += count
        if count < ctx.settings.batch_size:
            break
    return handled


def drain_once(
    db: Database,
    config: Config,
    *,
    now: datetime,
    owner: str,
    connector_factory: ConnectorFactory | None = None,
    mailer: Mailer | None = None,
    lease: timedelta = DEFAULT_LEASE,
    limit: int = DEFAULT_BATCH,
) -> int:
    """Claim up to `limit` due items and perform them; returns how many were claimed."""
    drainer = Drainer(db, config, connector_factory=connector_factory, mailer=mailer)
    return drainer.drain_once(now=now, owner=owner, lease=lease, limit=limit)


class Drainer:
    """Performs outbox items; connectors and SMTP settings are made on first use."""

    def __init__(
        self,
        db: Database,
        config: Config,
        *,
        connector_factory: ConnectorFactory | None = None,
        mailer: Mailer | None = None,
    ) -> None:
        self.db = db
        self.config = config
        self._factory = connector_factory
        self._mailer = mailer
        self.cancelled_events = _cancelled_events_mode(config)

    def drain_once(self, *, now: datetime, owner: str, lease: timedelta, limit: int) -> int:
        with self.db.write_session() as session:
            items = [
                (item.id, item.kind, dict(item.payload or {}), item.booking_id)
                for item in claim_due_outbox(session, owner, now, lease, limit)
            ]
        for item_id, kind, payload, booking_id in items:
            outcome, written = self._perform(item_id, kind, payload, booking_id, now)
            self._record(item_id, owner, now, outcome, written, booking_id)
        return len(items)

    # -- performing ---------------------------------------------------------------------------

    def _perform(
        self,
        item_id: int,
        kind: str,
        payload: dict[str, Any],
        booking_id: str | None,
        now: datetime,
    ) -> tuple[Outcome, EventWritten | None]:
        try:
            return self._dispatch(kind, payload, booking_id, now)
        except AuthError as error:
            log.error("outbox %s (%s): credentials rejected, giving up: %s", item_id, kind, error)
            return Failed(f"AuthError: {error}"), None
        except UndecryptableSecret as error:
            log.error("outbox %s (%s): %s", item_id, kind, error)
            return Failed(str(error)), None
        except NotFound as error:
            log.error("outbox %s (%s): calendar not found, giving up: %s", item_id, kind, error)
            return Failed(f"NotFound: {error}"), None
        except (PermanentMailError, InviteError) as error:
            log.error("outbox %s (%s): cannot send, giving up: %s", item_id, kind, error)
            return Failed(f"{type(error).__name__}: {error}"), None
        except PermanentDeliveryError as error:
            log.error("outbox %s (%s): webhook refused, giving up: %s", item_id, kind, error)
            return Failed(str(error)), None
        except (ConnectorError, TransientMailError, TransientDeliveryError) as error:
            log.warning("outbox %s (%s): will retry: %s", item_id, kind, error)
            return Retry(f"{type(error).__name__}: {error}"), None
        except ConfigError:
            raise  # a broken config fails the whole run loudly; the leases expire
        except Exception as error:
            log.exception("outbox %s (%s): unexpected failure, will retry", item_id, kind)
            return Retry(f"internal error: {type(error).__name__}"), None

    def _dispatch(
        self, kind: str, payload: dict[str, Any], booking_id: str | None, now: datetime
    ) -> tuple[Outcome, EventWritten | None]:
        if kind == "webhook":
            return self._webhook(payload), None  # every event is delivered, even superseded ones
        if booking_id is None:
            return Failed(f"{kind} item without a booking"), None
        context = _load_context(self.db, booking_id)
        if context is None:
            return Failed(f"booking {booking_id} does not exist"), None
        if _sequence(payload) < context.booking.sequence:
            return Done("superseded by a newer item"), None
        if kind == "calendar_upsert":
            return self._upsert(context)
        if kind == "calendar_delete":
            return self._delete(context)
        if kind == "invite":
            return self._invite(context, payload), None
        return Failed(f"unknown outbox kind {kind!r}"), None

    def _upsert(self, context: _BookingContext) -> tuple[Outcome, EventWritten | None]:
        if context.booking.status != "confirmed":
            return Done(f"booking is {context.booking.status}; nothing to write"), None
        return self._write_event(context, status="CONFIRMED")

    def _delete(self, context: _BookingContext) -> tuple[Outcome, EventWritten | None]:
        if self.cancelled_events == "mark":
            return self._write_event(context, status="CANCELLED")
        calendar, account = context.calendar, context.account
        if calendar is None or account is None:
            return Done("no calendar holds the event"), None
        ref = _known_ref(context) or _deterministic_ref(calendar.provider, context.booking.id)
        with self._connector(account) as connector:
            connector.delete_event(calendar.remote_id, EventRef(ref.ref, None))
        log.info(
            "deleted the event of booking %s from calendar %s", context.booking.id, calendar.id
        )
        return Done(), EventWritten(calendar.id, None)

    def _write_event(
        self, context: _BookingContext, *, status: str
    ) -> tuple[Outcome, EventWritten | None]:
        calendar, account = context.calendar, context.account
        if calendar is None or account is None:
            return Done("mentor has no destination calendar; event not written"), None
        spec = event_spec(context, status=status)
        with self._connector(account) as connector:
            ref = _put(connector, calendar.remote_id, spec, _known_ref(context), context.booking)
        log.info(
            "wrote the event of booking %s (sequence %d, %s) to calendar %s",
            context.booking.id,
            spec.sequence,
            status,
            calendar.id,
        )
        return Done(), EventWritten(calendar.id, ref)

    def _invite(self, context: _BookingContext, payload: dict[str, Any]) -> Outcome:
        if not self.config.require_type("invites", "enabled", bool, True):
            return Done("invites are disabled ([invites] enabled = false)")
        method = str(payload.get("method", "REQUEST")).upper()
        if method not in ("REQUEST", "CANCEL"):
            return Failed(f"unknown invite method {method!r}")
        details = invite_details(context, organizer_email(self.config))
        sender = self._mailer or default_mailer(self.config)
        from_address = smtp_settings(self.config).from_address
        message = build_message(details, cast(Method, method), from_address=from_address)
        sender(message)
        return Done()

    def _webhook(self, payload: dict[str, Any]) -> Outcome:
        url = self.config.require_type("webhooks", "url", str, None)
        if not url:
            return Done("webhooks are not configured ([webhooks] url)")
        timeout = self.config.positive("webhooks", "timeout_seconds", 10)
        deliver(
            str(url), str(payload["event"]), payload["body"], webhook_secret(self.config), timeout
        )
        return Done()

    def _connector(self, account: CalendarAccount) -> _ClosingConnector:
        if self._factory is None:
            self._factory = default_factory(self.config)
        return _ClosingConnector(self._factory(account))

    # -- recording ----------------------------------------------------------------------------

    def _record(
        self,
        item_id: int,
        owner: str,
        now: datetime,
        outcome: Outcome,
        written: EventWritten | None,
        booking_id: str | None,
    ) -> None:
        with self.db.write_session() as session:
            if written is not None and booking_id is not None:
                store_event_ref(session, booking_id, written)
            held = _finish(session, item_id, owner, now, outcome)
        if not held:
            log.warning("outbox %s: lease lost before the outcome was recorded", item_id)


def _finish(session: Session, item_id: int, owner: str, now: datetime, outcome: Outcome) -> bool:
    if isinstance(outcome, Done):
        held = finish_outbox(session, item_id, owner, now)
        if held and outcome.note:
            item = session.get(OutboxItem, item_id)
            if item is not None:
                item.last_error = outcome.note  # done, with a note for the admin
        return held
    permanent = isinstance(outcome, Failed)
    return fail_outbox(session, item_id, owner, now, outcome.error, permanent)


def store_event_ref(session: Session, booking_id: str, written: EventWritten) -> None:
    """Remember where the booking's event lives (or that it is gone)."""
    booking = repo.get_booking(session, booking_id)
    if booking is None:
        return
    booking.event_calendar_id = written.calendar_id
    booking.event_ref = written.ref.ref if written.ref else None
    booking.event_etag = written.ref.etag if written.ref else None


# -- the event --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _BookingContext:
    booking: Booking
    service_name: str
    meeting_url: str | None
    mentor_name: str
    mentor_email: str
    student_name: str
    student_email: str
    student_timezone: str
    calendar: Calendar | None  # where the event is (or goes)
    account: CalendarAccount | None


def _load_context(db: Database, booking_id: str) -> _BookingContext | None:
    with db.session() as session:
        booking = repo.get_booking(session, booking_id)
        if booking is None:
            return None
        mentor = repo.get_mentor(session, booking.mentor_id)
        student = repo.get_student(session, booking.student_id)
        service = repo.get_service(session, booking.service_slug)
        assert mentor is not None and student is not None and service is not None
        calendar = _event_calendar(session, booking)
        account = _usable_account(session, calendar)
        return _BookingContext(
            booking=booking,
            service_name=service.name,
            meeting_url=service.meeting_url or mentor.meeting_url,
            mentor_name=mentor.name,
            mentor_email=mentor.email,
            student_name=student.name,
            student_email=student.email,
            student_timezone=student.timezone,
            calendar=calendar,
            account=account,
        )


def _event_calendar(session: Session, booking: Booking) -> Calendar | None:
    """The calendar that already holds the event, else the mentor's destination."""
    if booking.event_calendar_id is not None:
        current = store.get_calendar(session, booking.event_calendar_id)
        if current is not None:
            return current
    return store.destination_calendar(session, booking.mentor_id)


def _usable_account(session: Session, calendar: Calendar | None) -> CalendarAccount | None:
    if calendar is None or calendar.account_id is None:
        return None
    return store.get_account(session, calendar.account_id)


def event_spec(context: _BookingContext, *, status: str = "CONFIRMED") -> EventSpec:
    booking = context.booking
    description = f"Join: {context.meeting_url}" if context.meeting_url else ""
    return EventSpec(
        event_key=booking.id,
        uid=booking_uid(booking.id),
        summary=f"{context.service_name} with {context.student_name}",
        start=booking.start,
        end=booking.end,
        sequence=booking.sequence,
        description=description,
        location=context.meeting_url or "",
        organizer_email=context.mentor_email,
        organizer_name=context.mentor_name,
        attendees=((context.student_name, context.student_email),),
        status=status,
        private={BOOKING_ID_KEY: booking.id},
    )


def _known_ref(context: _BookingContext) -> EventRef | None:
    booking = context.booking
    same_calendar = (
        context.calendar is not None and booking.event_calendar_id == context.calendar.id
    )
    if booking.event_ref and same_calendar:
        return EventRef(booking.event_ref, booking.event_etag)
    return None


def _deterministic_ref(provider: str, booking_id: str) -> EventRef:
    """Where the connectors put a new booking event (see their put_event): lets a cancel
    find an event whose creation was never recorded because of a crash."""
    return EventRef(booking_id if provider == "google" else f"{booking_id}.ics")


def _put(
    connector: Connector, calendar: str, spec: EventSpec, known: EventRef | None, booking: Booking
) -> EventRef:
    if known is not None:
        try:
            return connector.put_event(calendar, spec, known)
        except PreconditionFailed:
            # Someone edited the event in their calendar; the booking is the truth.
            log.info("event of booking %s changed remotely; overwriting it", booking.id)
            return connector.put_event(calendar, spec, EventRef(known.ref, None))
    created = connector.put_event(calendar, spec, None)
    if created.etag is None or booking.sequence > 0:
        # The create may have met an event written by an attempt whose commit never happened
        # (a crash), possibly with older content: update it to this booking state.
        return connector.put_event(calendar, spec, EventRef(created.ref, None))
    return created


class _ClosingConnector:
    def __init__(self, connector: Connector) -> None:
        self.connector = connector

    def __enter__(self) -> Connector:
        return self.connector

    def __exit__(self, *exc_info: object) -> None:
        self.connector.close()


def _sequence(payload: dict[str, Any]) -> int:
    value = payload.get("sequence", 0)
    return value if isinstance(value, int) else 0


# -- invites ----------------------------------------------------------------------------------


def invite_details(context: _BookingContext, organizer: str) -> InviteDetails:
    booking = context.booking
    return InviteDetails(
        booking_id=booking.id,
        sequence=booking.sequence,
        start=booking.start,
        end=booking.end,
        service_name=context.service_name,
        mentor_name=context.mentor_name,
        mentor_email=context.mentor_email,
        student_name=context.student_name,
        student_email=context.student_email,
        student_timezone=context.student_timezone,
        meeting_url=context.meeting_url,
        organizer_email=organizer,
        # The booking's last change, not "now": a resend after a crash is byte-identical.
        dtstamp=booking.updated_at,
    )


def organizer_email(config: Config) -> str:
    """`[invites] organizer`, else the SMTP sender, else a local placeholder."""
    organizer = config.require_type("invites", "organizer", str, None)
    sender = config.require_type("smtp", "from", str, None)
    return str(organizer or (parseaddr(sender)[1] if sender else "") or "syncd@localhost")


def smtp_settings(config: Config) -> SmtpSettings:
    """SmtpSettings from [smtp]; the password from `password_file` or $SYNCD_SMTP_PASSWORD,
    never from the config file itself. (Key names and types are checked by syncd.config.)"""
    section = config.section("smtp")
    security = section.get("security", "none")
    if security not in ("none", "starttls", "ssl"):
        raise ConfigError(
            f"{config.path or 'config'}: [smtp] security must be none, starttls or ssl"
        )
    optional: dict[str, Any] = {
        "host": section.get("host"),
        "port": section.get("port"),
        "username": section.get("username"),
        "timeout": section.get("timeout_seconds"),
        "ca_file": section.get("ca_file"),
    }
    return SmtpSettings(
        **{key: value for key, value in optional.items() if value is not None},
        security=security,
        from_address=_from_address(config),
        password=_smtp_password(config),
    )


def _from_address(config: Config) -> str:
    """`[smtp] from` as a bare address: it may be written "Name <address>" (the example config
    does), but invites use it as an addr-spec (From, Message-ID domain)."""
    configured = config.section("smtp").get("from")
    if not configured:
        return organizer_email(config)
    return parseaddr(str(configured))[1] or str(configured)


def webhook_secret(config: Config) -> str:
    """The HMAC secret from `[webhooks] secret_file` or $SYNCD_WEBHOOK_SECRET."""
    from_env = os.environ.get("SYNCD_WEBHOOK_SECRET")
    if from_env:
        return from_env
    path = config.require_type("webhooks", "secret_file", str, None)
    if not path:
        raise ConfigError(
            "[webhooks] url is set but no secret: set secret_file or $SYNCD_WEBHOOK_SECRET"
        )
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as error:
        raise ConfigError(f"cannot read [webhooks] secret_file: {error.strerror}") from None


def mail_folder(config: Config) -> Path:
    configured = config.require_type("invites", "mail_dir", str, None)
    return Path(configured) if configured else state_directory() / "mail"


def default_mailer(config: Config) -> Mailer:
    """SMTP when `[smtp]` is configured; otherwise invites are kept as .eml files in the
    state directory's mail/ folder, so nothing is lost before mail is set up."""
    if config.section("smtp"):
        return partial(send_message, smtp_settings(config))
    return partial(write_eml, mail_folder(config))


def write_eml(folder: Path, message: EmailMessage) -> None:
    """Write the message atomically, named after its Message-ID: a resend after a crash
    replaces the identical copy instead of adding a second one."""
    folder.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9._-]", "_", str(message["Message-ID"]).strip("<>")) + ".eml"
    temporary = folder / f".{name}.tmp"
    temporary.write_bytes(message.as_bytes())
    os.replace(temporary, folder / name)
    log.info("invite written to %s (no [smtp] configured)", folder / name)


def _smtp_password(config: Config) -> str | None:
    from_env = os.environ.get("SYNCD_SMTP_PASSWORD")
    if from_env:
        return from_env
    path = config.require_type("smtp", "password_file", str, None)
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError as error:
        raise ConfigError(f"cannot read [smtp] password_file: {error.strerror}") from None


def _cancelled_events_mode(config: Config) -> str:
    mode = config.get("daemon", "cancelled_events", "delete")
    if mode not in CANCELLED_EVENT_MODES:
        raise ConfigError(
            f"{config.path or 'config'}: [daemon] cancelled_events must be "
            f"{' or '.join(CANCELLED_EVENT_MODES)}, got {mode!r}"
        )
    return str(mode)


__all__ = [
    "Drainer",
    "drain_once",
    "drain_outbox",
    "event_spec",
    "smtp_settings",
    "store_event_ref",
]
