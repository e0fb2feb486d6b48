"""Request and response bodies of the JSON API (pydantic), and their conversion from rows."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from syncd import quotas
from syncd.store.models import Booking, Calendar, Mentor, Service
from syncd.webhooks import booking_document

# Instants outside this range are refused at the boundary: nobody books a session in year 9999,
# and arithmetic on such dates would overflow deep inside the engine.
EARLIEST_YEAR, LATEST_YEAR = 2000, 2200
IdText = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


def _sane_instant(value: datetime) -> datetime:
    if not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
        raise ValueError(f"must be between the years {EARLIEST_YEAR} and {LATEST_YEAR}")
    return value


Instant = Annotated[AwareDatetime, AfterValidator(_sane_instant)]


class ErrorBody(BaseModel):
    error: str = Field(description="A stable machine-readable code, e.g. slot_unavailable.")
    message: str = Field(description="What went wrong, for people.")


class MentorBrief(BaseModel):
    id: str
    name: str
    timezone: str


class ServiceOut(BaseModel):
    slug: str
    name: str
    duration: int
    buffer_before: int
    buffer_after: int
    min_notice: int
    horizon_days: int
    step: int
    max_per_day: int | None
    max_upcoming: int | None
    cancel_refund_hours: int
    group: str | None
    mentors: list[MentorBrief]

    @classmethod
    def of(cls, service: Service, mentors: list[Mentor]) -> ServiceOut:
        return cls(
            slug=service.slug,
            name=service.name,
            duration=service.duration_min,
            buffer_before=service.buffer_before_min,
            buffer_after=service.buffer_after_min,
            min_notice=service.min_notice_min,
            horizon_days=service.horizon_days,
            step=service.step_min,
            max_per_day=service.max_per_day,
            max_upcoming=service.max_upcoming,
            cancel_refund_hours=service.cancel_refund_hours,
            group=service.service_group,
            mentors=[MentorBrief(id=m.id, name=m.name, timezone=m.timezone) for m in mentors],
        )


class SlotOut(BaseModel):
    """Exactly `syncd slots --json`: instants in the asked zone, with its offset."""

    start: str = Field(examples=["2027-03-08T09:00:00+05:30"])
    end: str
    mentors: list[str]


class BookingOut(BaseModel):
    """Exactly `syncd book --json`: instants in UTC with a Z."""

    id: str
    service: str
    mentor: str
    student: str
    start: str
    end: str
    status: str
    sequence: int
    created_at: str | None
    cancelled_at: str | None
    cancelled_by: str | None
    cancel_reason: str | None

    @classmethod
    def of(cls, booking: Booking) -> BookingOut:
        return cls(**booking_document(booking))


class CancelledOut(BookingOut):
    refunded: bool


class BookingCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    service: IdText
    mentor: IdText
    student: IdText
    start: Instant = Field(description="ISO-8601 with an offset or Z; naive times are refused.")


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    by: Literal["student", "mentor", "admin"] | None = Field(
        default=None, description="Who cancels (decides the refund); defaults from the caller."
    )
    reason: str | None = Field(default=None, max_length=1000)


class RescheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: Instant


class QuotaOut(BaseModel):
    """Exactly `syncd quota show --json`."""

    service: str
    remaining: int | None
    unlimited: bool
    used: int
    period_start: date | None
    next_renewal: date | None
    expires: date | None

    @classmethod
    def of(cls, row: quotas.ServiceQuota) -> QuotaOut:
        return cls(
            service=row.service,
            remaining=row.remaining,
            unlimited=row.unlimited,
            used=row.used,
            period_start=row.period_start,
            next_renewal=row.next_renewal,
            expires=row.expires,
        )


def redact(text: str | None) -> str | None:
    """Drop credentials a provider error may echo back inside a URL (user:password@host)."""
    return _URL_CREDENTIALS.sub(r"\g<scheme>", text) if text else text


class CalendarOut(BaseModel):
    """A calendar's connection status. Credentials and sync tokens are never included."""

    id: int
    provider: str
    name: str
    blocks_time: bool
    is_destination: bool
    last_success: datetime | None
    last_error: str | None
    consecutive_failures: int
    needs_reconnect: bool

    @classmethod
    def of(cls, calendar: Calendar) -> CalendarOut:
        return cls(
            id=calendar.id,
            provider=calendar.provider,
            name=calendar.name,
            blocks_time=calendar.blocks_time,
            is_destination=calendar.is_destination,
            last_success=calendar.last_success,
            last_error=redact(calendar.last_error),
            consecutive_failures=calendar.consecutive_failures,
            needs_reconnect=calendar.needs_reconnect,
        )


class LinkCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["mentor", "student"]
    id: IdText
    days: int = Field(default=30, ge=1, le=365)


class LinkOut(BaseModel):
    url: str
    expires: datetime
