"""`syncd slots`, `syncd quota`, `syncd book`, `cancel`, `reschedule`, `bookings`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from itertools import groupby
from typing import Any

import click

from syncd import availability as engine
from syncd import directory, quotas
from syncd.booking import BookingRequest, mark_no_show
from syncd.cli.base import AppContext, cli, emit_json, friendly_errors, pass_app
from syncd.services import booking_service
from syncd.slots import find_slots
from syncd.store import repo
from syncd.store.models import Booking
from syncd.timeutil import parse_date, parse_instant, utc_now, zone

# -- slots ------------------------------------------------------------------------------------


@cli.command("slots")
@click.argument("slug")
@click.option("--tz", "tz_name", required=True, help="The student's IANA zone.")
@click.option("--mentor", "mentor_id", default=None, metavar="ID")
@click.option("--from", "first", default=None, metavar="YYYY-MM-DD", help="Default: today in ZONE.")
@click.option("--days", type=int, default=7, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_app
@friendly_errors
def slots_command(
    app: AppContext,
    slug: str,
    tz_name: str,
    mentor_id: str | None,
    first: str | None,
    days: int,
    as_json: bool,
) -> None:
    """Bookable slots of a service, shown in the student's zone."""
    tz = zone(tz_name)
    now = utc_now()
    first_day = parse_date(first) if first else now.astimezone(tz).date()
    with app.session() as session:
        found = find_slots(
            session,
            slug,
            tz_name=tz_name,
            first_day=first_day,
            days=days,
            now=now,
            mentor_id=mentor_id,
        )
    rows = [
        {
            "start": s.start.astimezone(tz).isoformat(),
            "end": s.end.astimezone(tz).isoformat(),
            "mentors": list(s.mentors),
        }
        for s in found
    ]
    if as_json:
        emit_json(rows)
        return
    _print_slots_text(found, tz_name)


def _print_slots_text(found: Sequence[engine.Slot], tz_name: str) -> None:
    tz = zone(tz_name)
    if not found:
        click.echo(f"no slots ({tz_name})")
        return
    for day, day_slots in groupby(found, key=lambda s: s.start.astimezone(tz).date()):
        click.echo(f"{day:%A %d %B %Y} ({tz_name})")
        for slot in day_slots:
            start, end = slot.start.astimezone(tz), slot.end.astimezone(tz)
            click.echo(f"  {start:%H:%M}-{end:%H:%M}  {', '.join(slot.mentors)}")


# -- quotas -----------------------------------------------------------------------------------


@cli.group()
def quota() -> None:
    """Students' session quotas (a ledger of grants, consumptions and refunds)."""


@quota.command("grant")
@click.argument("student_id", metavar="STUDENT")
@click.argument("slug", metavar="SLUG")
@click.option("--sessions", type=int, default=None, metavar="N")
@click.option("--unlimited", is_flag=True)
@click.option("--renew", type=click.Choice(["none", "weekly", "monthly", "yearly"]), default="none")
@click.option("--expires", default=None, metavar="YYYY-MM-DD", help="Last valid date, inclusive.")
@click.option(
    "--anchor", default=None, metavar="YYYY-MM-DD", help="First period starts here (default today)."
)
@click.option("--carry-over", is_flag=True, help="Unused sessions roll into the next period.")
@click.option("--group", is_flag=True, help="SLUG names a service group instead of a service.")
@pass_app
@friendly_errors
def quota_grant(
    app: AppContext,
    student_id: str,
    slug: str,
    sessions: int | None,
    unlimited: bool,
    renew: str,
    expires: str | None,
    anchor: str | None,
    carry_over: bool,
    group: bool,
) -> None:
    """Grant N sessions (or unlimited) of a service to a student."""
    if unlimited == (sessions is not None):
        raise click.UsageError("give exactly one of --sessions N or --unlimited")
    with app.session() as session:
        pupil = directory.require_student(session, student_id)
        today = utc_now().astimezone(zone(pupil.timezone)).date()
        row = quotas.grant(
            session,
            pupil,
            service=None if group else directory.require_service(session, slug),
            group=slug if group else None,
            sessions=sessions,
            renewal=renew,
            anchor=parse_date(anchor) if anchor else None,
            expires=parse_date(expires) if expires else None,
            carry_over=carry_over,
            today=today,
        )
        grant_id = row.id
    amount = "unlimited" if sessions is None else f"{sessions}"
    click.echo(f"grant {grant_id}: {amount} {slug} sessions for {student_id} (renewal: {renew})")


@quota.command("show")
@click.argument("student_id", metavar="STUDENT")
@click.option("--json", "as_json", is_flag=True)
@pass_app
@friendly_errors
def quota_show(app: AppContext, student_id: str, as_json: bool) -> None:
    """Per service: remaining this period, used, next renewal, expiry."""
    with app.session() as session:
        pupil = directory.require_student(session, student_id)
        today = utc_now().astimezone(zone(pupil.timezone)).date()
        rows = quotas.summary(session, pupil, repo.list_services(session), today)
    data = [_quota_json(row) for row in rows]
    if as_json:
        emit_json(data)
        return
    if not data:
        click.echo(f"{student_id} has no grants")
    for item in data:
        left = "unlimited" if item["remaining"] is None else f"{item['remaining']} left"
        renew = f", renews {item['next_renewal']}" if item["next_renewal"] else ""
        expiry = f", expires {item['expires']}" if item["expires"] else ""
        click.echo(f"{item['service']}: {left}, {item['used']} used this period{renew}{expiry}")


def _quota_json(row: quotas.ServiceQuota) -> dict[str, Any]:
    def day(value: date | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "service": row.service,
        "remaining": row.remaining,
        "unlimited": row.unlimited,
        "used": row.used,
        "period_start": day(row.period_start),
        "next_renewal": day(row.next_renewal),
        "expires": day(row.expires),
    }


# -- bookings ---------------------------------------------------------------------------------


def _booking_json(booking: Booking) -> dict[str, Any]:
    def instant(value: datetime | None) -> str | None:
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None

    return {
        "id": booking.id,
        "service": booking.service_slug,
        "mentor": booking.mentor_id,
        "student": booking.student_id,
        "start": instant(booking.start),
        "end": instant(booking.end),
        "status": booking.status,
        "sequence": booking.sequence,
        "created_at": instant(booking.created_at),
        "cancelled_at": instant(booking.cancelled_at),
        "cancelled_by": booking.cancelled_by,
        "cancel_reason": booking.cancel_reason,
    }


@cli.command("book")
@click.argument("slug")
@click.option("--mentor", "mentor_id", required=True, metavar="ID")
@click.option("--student", "student_id", required=True, metavar="ID")
@click.option("--start", required=True, metavar="ISO-8601", help="With an offset or Z.")
@click.option(
    "--idempotency-key", default=None, help="Retrying with the same key returns the same booking."
)
@click.option("--json", "as_json", is_flag=True)
@pass_app
@friendly_errors
def book_command(
    app: AppContext,
    slug: str,
    mentor_id: str,
    student_id: str,
    start: str,
    idempotency_key: str | None,
    as_json: bool,
) -> None:
    """Book a session; prints the booking id."""
    request = BookingRequest(slug, mentor_id, student_id, parse_instant(start), idempotency_key)
    booking = booking_service(app.database(), app.config).book(request, now=utc_now())
    if as_json:
        emit_json(_booking_json(booking))
    else:
        click.echo(booking.id)


@cli.command("cancel")
@click.argument("booking_id")
@click.option(
    "--by",
    "by",
    type=click.Choice(["student", "mentor", "admin"]),
    default="admin",
    show_default=True,
)
@click.option("--reason", default=None, metavar="TEXT")
@click.option("--json", "as_json", is_flag=True)
@pass_app
@friendly_errors
def cancel_command(
    app: AppContext, booking_id: str, by: str, reason: str | None, as_json: bool
) -> None:
    """Cancel a booking (refunds when the policy allows)."""
    result = booking_service(app.database(), app.config).cancel(
        booking_id, by=by, reason=reason, now=utc_now()
    )
    if as_json:
        emit_json({**_booking_json(result.booking), "refunded": result.refunded})
    else:
        click.echo(
            f"cancelled {booking_id}" + (" (refunded)" if result.refunded else " (not refunded)")
        )


@cli.command("reschedule")
@click.argument("booking_id")
@click.option("--start", required=True, metavar="ISO-8601")
@click.option("--json", "as_json", is_flag=True)
@pass_app
@friendly_errors
def reschedule_command(app: AppContext, booking_id: str, start: str, as_json: bool) -> None:
    """Move a booking to a new start (same booking id and calendar event)."""
    booking = booking_service(app.database(), app.config).reschedule(
        booking_id, parse_instant(start), now=utc_now()
    )
    if as_json:
        emit_json(_booking_json(booking))
    else:
        click.echo(f"rescheduled {booking_id} to {booking.start.isoformat()}")


@cli.command("no-show")
@click.argument("booking_id")
@pass_app
@friendly_errors
def no_show_command(app: AppContext, booking_id: str) -> None:
    """Mark a started booking as a no-show (its session stays spent)."""
    mark_no_show(app.database(), booking_id, now=utc_now())
    click.echo(f"booking {booking_id} marked no-show")


@cli.command("bookings")
@click.option("--student", "student_id", default=None, metavar="ID")
@click.option("--mentor", "mentor_id", default=None, metavar="ID")
@click.option("--upcoming", is_flag=True, help="Only confirmed bookings that have not ended.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
@friendly_errors
def bookings_command(
    app: AppContext, student_id: str | None, mentor_id: str | None, upcoming: bool, as_json: bool
) -> None:
    """List bookings."""
    with app.session() as session:
        if student_id:
            directory.require_student(session, student_id)
        if mentor_id:
            directory.require_mentor(session, mentor_id)
        rows = repo.bookings(
            session,
            student_id=student_id,
            mentor_id=mentor_id,
            after=utc_now() if upcoming else None,
            live_only=upcoming,
        )
        data = [_booking_json(b) for b in rows]
    if as_json:
        emit_json(data)
        return
    for item in data:
        click.echo(
            f"{item['id']}  {item['start']}  {item['service']}  {item['mentor']} -> {item['student']}  {item['status']}"
        )
