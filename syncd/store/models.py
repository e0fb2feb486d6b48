"""The database schema as typed SQLAlchemy models. Only syncd.store knows SQL.

Every instant is stored as UTC (`UTCDateTime`): timestamptz on PostgreSQL, naive UTC text on
SQLite, always handed back aware.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Time,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

LIVE_BOOKING_STATUSES = ("confirmed", "completed", "no_show")
BOOKING_STATUSES = ("confirmed", "cancelled", "completed", "no_show")
MENTOR_STATUSES = ("active", "unlisted", "inactive")


class UTCDateTime(TypeDecorator[datetime]):
    """Refuses naive datetimes on the way in; always returns aware UTC on the way out."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r} cannot be stored; pass an aware one")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}


def _now() -> datetime:
    return datetime.now(UTC)


class Mentor(Base):
    __tablename__ = "mentors"
    __table_args__ = (CheckConstraint(f"status IN {MENTOR_STATUSES!r}", name="ck_mentor_status"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    timezone: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="active")
    meeting_url: Mapped[str | None] = mapped_column(String(2000))
    created_at: Mapped[datetime] = mapped_column(default=_now)

    weekly_hours: Mapped[list[WeeklyHours]] = relationship(
        cascade="all, delete-orphan", order_by="WeeklyHours.weekday, WeeklyHours.start_time"
    )
    overrides: Mapped[list[DateOverride]] = relationship(
        cascade="all, delete-orphan", order_by="DateOverride.day, DateOverride.start_time"
    )


class WeeklyHours(Base):
    """One weekly window in the mentor's zone; end <= start crosses midnight."""

    __tablename__ = "weekly_hours"
    __table_args__ = (CheckConstraint("weekday BETWEEN 0 AND 6", name="ck_weekday"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    mentor_id: Mapped[str] = mapped_column(ForeignKey("mentors.id", ondelete="CASCADE"), index=True)
    weekday: Mapped[int] = mapped_column(Integer)
    start_time: Mapped[time] = mapped_column(Time)
    end_time: Mapped[time] = mapped_column(Time)


class DateOverride(Base):
    """Replaces one local date's hours; a row without times marks the date unavailable."""

    __tablename__ = "date_overrides"

    id: Mapped[int] = mapped_column(primary_key=True)
    mentor_id: Mapped[str] = mapped_column(ForeignKey("mentors.id", ondelete="CASCADE"), index=True)
    day: Mapped[date] = mapped_column(Date)
    start_time: Mapped[time | None] = mapped_column(Time)
    end_time: Mapped[time | None] = mapped_column(Time)


class Service(Base):
    __tablename__ = "services"

    slug: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    duration_min: Mapped[int] = mapped_column(Integer)
    buffer_before_min: Mapped[int] = mapped_column(Integer, default=0)
    buffer_after_min: Mapped[int] = mapped_column(Integer, default=0)
    min_notice_min: Mapped[int] = mapped_column(Integer, default=0)
    horizon_days: Mapped[int] = mapped_column(Integer, default=14)
    step_min: Mapped[int] = mapped_column(Integer, default=15)
    max_per_day: Mapped[int | None] = mapped_column(Integer)
    max_upcoming: Mapped[int | None] = mapped_column(Integer)
    cancel_refund_hours: Mapped[int] = mapped_column(Integer, default=24)
    service_group: Mapped[str | None] = mapped_column(String(64))
    meeting_url: Mapped[str | None] = mapped_column(String(2000))


class ServiceMentor(Base):
    __tablename__ = "service_mentors"

    service_slug: Mapped[str] = mapped_column(
        ForeignKey("services.slug", ondelete="CASCADE"), primary_key=True
    )
    mentor_id: Mapped[str] = mapped_column(
        ForeignKey("mentors.id", ondelete="CASCADE"), primary_key=True
    )


class Student(Base):
    __tablename__ = "students"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    timezone: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=_now)


class CalendarAccount(Base):
    """Credentials for one provider account of a mentor; the secret is encrypted at rest."""

    __tablename__ = "calendar_accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    mentor_id: Mapped[str] = mapped_column(ForeignKey("mentors.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(16))  # "caldav" | "google"
    url: Mapped[str | None] = mapped_column(String(2000))
    username: Mapped[str | None] = mapped_column(String(320))
    secret: Mapped[str | None] = mapped_column(Text)  # encrypted token or password
    needs_reconnect: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=_now)


class Calendar(Base):
    """One mentor calendar syncd reads busy time from and/or writes bookings into."""

    __tablename__ = "calendars"
    __table_args__ = (UniqueConstraint("account_id", "remote_id", name="uq_calendar_remote"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    mentor_id: Mapped[str] = mapped_column(ForeignKey("mentors.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("calendar_accounts.id", ondelete="CASCADE")
    )
    provider: Mapped[str] = mapped_column(String(16))
    remote_id: Mapped[str] = mapped_column(String(2000))
    name: Mapped[str] = mapped_column(String(200), default="")
    timezone: Mapped[str | None] = mapped_column(String(64))
    blocks_time: Mapped[bool] = mapped_column(Boolean, default=True)
    is_destination: Mapped[bool] = mapped_column(Boolean, default=False)
    sync_state: Mapped[str | None] = mapped_column(Text)
    sync_interval_s: Mapped[int] = mapped_column(Integer, default=300)
    window_end: Mapped[datetime | None] = mapped_column()
    next_sync_at: Mapped[datetime | None] = mapped_column()
    last_success: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    needs_reconnect: Mapped[bool] = mapped_column(Boolean, default=False)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires: Mapped[datetime | None] = mapped_column()


class CalendarObject(Base):
    """A raw object pulled from a calendar, kept so recurring masters can be re-expanded."""

    __tablename__ = "calendar_objects"
    __table_args__ = (UniqueConstraint("calendar_id", "ref", name="uq_object_ref"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    calendar_id: Mapped[int] = mapped_column(ForeignKey("calendars.id", ondelete="CASCADE"))
    ref: Mapped[str] = mapped_column(String(2000))
    etag: Mapped[str | None] = mapped_column(String(500))
    kind: Mapped[str] = mapped_column(String(16))
    data: Mapped[str] = mapped_column(Text)
    recurring: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text)


class BusyInterval(Base):
    """One busy occurrence within the sync window."""

    __tablename__ = "busy_intervals"
    __table_args__ = (
        Index("ix_busy_calendar_start", "calendar_id", "start"),
        CheckConstraint('"end" > start', name="ck_busy_order"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    calendar_id: Mapped[int] = mapped_column(ForeignKey("calendars.id", ondelete="CASCADE"))
    object_ref: Mapped[str | None] = mapped_column(String(2000), index=True)
    uid: Mapped[str | None] = mapped_column(String(1000))
    start: Mapped[datetime] = mapped_column()
    end: Mapped[datetime] = mapped_column()
    booking_id: Mapped[str | None] = mapped_column(String(32))


class Booking(Base):
    __tablename__ = "bookings"
    __table_args__ = (
        CheckConstraint(f"status IN {BOOKING_STATUSES!r}", name="ck_booking_status"),
        CheckConstraint('"end" > start', name="ck_booking_order"),
        Index("ix_booking_mentor_start", "mentor_id", "start"),
        Index("ix_booking_student_start", "student_id", "start"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    service_slug: Mapped[str] = mapped_column(ForeignKey("services.slug"))
    mentor_id: Mapped[str] = mapped_column(ForeignKey("mentors.id"))
    student_id: Mapped[str] = mapped_column(ForeignKey("students.id"))
    start: Mapped[datetime] = mapped_column()
    end: Mapped[datetime] = mapped_column()
    block_start: Mapped[datetime] = mapped_column()  # start minus the buffer before
    block_end: Mapped[datetime] = mapped_column()  # end plus the buffer after
    status: Mapped[str] = mapped_column(String(16), default="confirmed")
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=_now)
    updated_at: Mapped[datetime] = mapped_column(default=_now)
    cancelled_at: Mapped[datetime | None] = mapped_column()
    cancelled_by: Mapped[str | None] = mapped_column(String(16))
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    event_calendar_id: Mapped[int | None] = mapped_column(
        ForeignKey("calendars.id", ondelete="SET NULL")
    )
    event_ref: Mapped[str | None] = mapped_column(String(2000))
    event_etag: Mapped[str | None] = mapped_column(String(500))


class QuotaGrant(Base):
    """An entitlement: N sessions (None = unlimited) for a service or a service group."""

    __tablename__ = "quota_grants"
    __table_args__ = (
        CheckConstraint("(service_slug IS NULL) <> (service_group IS NULL)", name="ck_grant_scope"),
        CheckConstraint("sessions IS NULL OR sessions >= 0", name="ck_grant_sessions"),
        CheckConstraint(
            "renewal IN ('none', 'weekly', 'monthly', 'yearly')", name="ck_grant_renewal"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    student_id: Mapped[str] = mapped_column(
        ForeignKey("students.id", ondelete="CASCADE"), index=True
    )
    service_slug: Mapped[str | None] = mapped_column(ForeignKey("services.slug"))
    service_group: Mapped[str | None] = mapped_column(String(64))
    sessions: Mapped[int | None] = mapped_column(Integer)
    renewal: Mapped[str] = mapped_column(String(16), default="none")
    anchor: Mapped[date] = mapped_column(Date)  # first day of the first period, student's zone
    expires: Mapped[date | None] = mapped_column(Date)  # last valid local date, inclusive
    carry_over: Mapped[bool] = mapped_column(Boolean, default=False)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=_now)


class QuotaConsumption(Base):
    __tablename__ = "quota_consumptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    grant_id: Mapped[int] = mapped_column(ForeignKey("quota_grants.id"), index=True)
    booking_id: Mapped[str] = mapped_column(ForeignKey("bookings.id"), index=True)
    period_start: Mapped[date | None] = mapped_column(Date)  # the renewal period charged
    created_at: Mapped[datetime] = mapped_column(default=_now)


class QuotaRefund(Base):
    __tablename__ = "quota_refunds"

    id: Mapped[int] = mapped_column(primary_key=True)
    consumption_id: Mapped[int] = mapped_column(ForeignKey("quota_consumptions.id"), unique=True)
    booking_id: Mapped[str] = mapped_column(ForeignKey("bookings.id"), index=True)
    reason: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=_now)


class OutboxItem(Base):
    """A side effect to perform after commit: write-back, invite, webhook. Drained with leases."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # calendar_upsert | calendar_delete | invite
    booking_id: Mapped[str | None] = mapped_column(ForeignKey("bookings.id"), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|done|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=_now)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=_now)
    done_at: Mapped[datetime | None] = mapped_column()


class PushChannel(Base):
    """An open Google `events.watch` channel of a calendar (push notifications).

    `token` is echoed by Google in X-Goog-Channel-Token; it is random per channel and compared
    in constant time. A calendar briefly has two channels while one is renewed."""

    __tablename__ = "watch_channels"

    id: Mapped[int] = mapped_column(primary_key=True)
    calendar_id: Mapped[int] = mapped_column(
        ForeignKey("calendars.id", ondelete="CASCADE"), index=True
    )
    channel_id: Mapped[str] = mapped_column(String(64), unique=True)
    resource_id: Mapped[str] = mapped_column(String(500))
    token: Mapped[str] = mapped_column(String(256))
    expiration: Mapped[datetime] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=_now)
