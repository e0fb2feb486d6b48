"""The `syncd` admin command line. Errors become one line on stderr and exit status 1."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import wraps
from itertools import groupby
from typing import Any, ParamSpec, TypeVar

import click
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from syncd import __version__, directory, quotas
from syncd import availability as engine
from syncd.booking import BookingRequest
from syncd.config import Config, load_config, resolve_database_url
from syncd.errors import SyncdError, UserError
from syncd.services import booking_service
from syncd.slots import find_slots
from syncd.store import repo
from syncd.store.db import Database
from syncd.store.models import Booking, Mentor
from syncd.timeutil import parse_date, parse_instant, utc_now, zone

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class AppContext:
    config_path: str | None
    database_url: str | None
    _config: Config | None = None
    _db: Database | None = None
    _checked: bool = field(default=False)

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    def database(self, *, upgrade: bool = True) -> Database:
        """The database, its schema brought up to date first (saying so on stderr)."""
        if self._db is None:
            self._db = Database(resolve_database_url(self.database_url, self.config))
        if upgrade and not self._checked:
            if self._db.needs_upgrade():
                click.echo("syncd: database schema is not current; upgrading it now", err=True)
                self._db.upgrade()
            self._checked = True
        return self._db

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.database().write_session() as session:
            yield session

    def close(self) -> None:
        if self._db is not None:
            self._db.dispose()


def friendly_errors(func: Callable[P, R]) -> Callable[P, R]:
    """One clear line on stderr and exit 1 instead of a traceback."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (SyncdError, engine.AvailabilityError) as error:
            _fail(str(error))
        except OperationalError as error:
            _fail(f"database error: {error.orig}")
        raise AssertionError("unreachable")

    return wrapper


def _fail(message: str) -> None:
    click.echo(f"syncd: error: {message}", err=True)
    sys.exit(1)


pass_app = click.make_pass_decorator(AppContext)


def _emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config", "config_path", metavar="PATH", help="TOML config file (or $SYNCD_CONFIG)."
)
@click.option(
    "--database", "database_url", metavar="URL", help="Database URL (or $SYNCD_DATABASE_URL)."
)
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
@click.version_option(__version__, prog_name="syncd")
@click.pass_context
def cli(
    ctx: click.Context, config_path: str | None, database_url: str | None, verbose: bool
) -> None:
    """syncd: calendar-integrated scheduling for 1-on-1 mentoring."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, stream=sys.stderr)
    app = AppContext(config_path, database_url)
    ctx.obj = app
    ctx.call_on_close(app.close)


# -- db ---------------------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@pass_app
@friendly_errors
def db_upgrade(app: AppContext) -> None:
    """Apply pending migrations."""
    database = app.database(upgrade=False)
    before = database.current_revision()
    database.upgrade()
    after = database.current_revision()
    click.echo(f"database at revision {after}" + ("" if before != after else " (already current)"))


# -- mentors ----------------------------------------------------------------------------------


@cli.group()
def mentor() -> None:
    """Mentors, their weekly hours and date overrides."""


@mentor.command("add")
@click.argument("mentor_id")
@click.option("--name", required=True)
@click.option("--email", required=True)
@click.option("--timezone", "tz", required=True, help="IANA zone, e.g. Europe/Madrid.")
@click.option("--status", type=click.Choice(["active", "unlisted", "inactive"]), default="active")
@pass_app
@friendly_errors
def mentor_add(
    app: AppContext, mentor_id: str, name: str, email: str, tz: str, status: str
) -> None:
    """Add a mentor."""
    with app.session() as session:
        directory.add_mentor(session, mentor_id, name=name, email=email, timezone=tz, status=status)
    click.echo(f"added mentor {mentor_id}")


@mentor.command("status")
@click.argument("mentor_id")
@click.argument("status", type=click.Choice(["active", "unlisted", "inactive"]))
@pass_app
@friendly_errors
def mentor_status(app: AppContext, mentor_id: str, status: str) -> None:
    """Set a mentor active, unlisted (bookable, not listed) or inactive."""
    with app.session() as session:
        directory.set_mentor_status(session, mentor_id, status)
    click.echo(f"mentor {mentor_id} is {status}")


@mentor.command("hours")
@click.argument("mentor_id")
@click.argument("specs", nargs=-1, required=True, metavar="SPEC...")
@pass_app
@friendly_errors
def mentor_hours(app: AppContext, mentor_id: str, specs: tuple[str, ...]) -> None:
    """Replace weekly hours, e.g. "mon-fri 09:00-13:00" "sun 22:00-02:00" (mentor's zone)."""
    with app.session() as session:
        rows = directory.set_weekly_hours(session, mentor_id, specs)
    click.echo(f"mentor {mentor_id}: {len(rows)} weekly windows")


@mentor.command("override")
@click.argument("mentor_id")
@click.argument("day", metavar="DATE")
@click.argument("ranges", nargs=-1, metavar="[HH:MM-HH:MM ...]")
@pass_app
@friendly_errors
def mentor_override(app: AppContext, mentor_id: str, day: str, ranges: tuple[str, ...]) -> None:
    """Replace one local date's hours; with no range the mentor is unavailable that date."""
    with app.session() as session:
        directory.set_override(session, mentor_id, parse_date(day), ranges)
    what = ", ".join(ranges) if ranges else "unavailable"
    click.echo(f"mentor {mentor_id} on {day}: {what}")


@mentor.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_app
@friendly_errors
def mentor_list(app: AppContext, as_json: bool) -> None:
    """List mentors."""
    with app.session() as session:
        rows = [_mentor_json(session, m) for m in repo.list_mentors(session)]
    if as_json:
        _emit_json(rows)
        return
    for row in rows:
        hours = "; ".join(row["hours"]) or "no hours"
        click.echo(f"{row['id']}\t{row['name']}\t{row['timezone']}\t{row['status']}\t{hours}")


def _mentor_json(session: Session, mentor: Mentor) -> dict[str, Any]:
    days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    return {
        "id": mentor.id,
        "name": mentor.name,
        "email": mentor.email,
        "timezone": mentor.timezone,
        "status": mentor.status,
        "hours": [
            f"{days[h.weekday]} {h.start_time:%H:%M}-{h.end_time:%H:%M}"
            for h in mentor.weekly_hours
        ],
        "overrides": [
            f"{o.day} "
            + (
                f"{o.start_time:%H:%M}-{o.end_time:%H:%M}"
                if o.start_time and o.end_time
                else "unavailable"
            )
            for o in mentor.overrides
        ],
    }


# -- services and students --------------------------------------------------------------------


@cli.group()
def service() -> None:
    """Bookable services."""


@service.command("add")
@click.argument("slug")
@click.option("--name", required=True)
@click.option("--duration", type=int, required=True, metavar="MIN")
@click.option("--buffer-before", type=int, default=0, metavar="MIN", show_default=True)
@click.option("--buffer-after", type=int, default=0, metavar="MIN", show_default=True)
@click.option("--min-notice", type=int, default=0, metavar="MIN", show_default=True)
@click.option("--horizon-days", type=int, default=14, metavar="N", show_default=True)
@click.option("--step", type=int, default=15, metavar="MIN", show_default=True)
@click.option(
    "--max-per-day", type=int, default=None, metavar="N", help="Per mentor and local day."
)
@click.option(
    "--max-upcoming",
    type=int,
    default=None,
    metavar="N",
    help="Future bookings a student may hold.",
)
@click.option("--cancel-refund-hours", type=int, default=24, metavar="H", show_default=True)
@click.option("--group", default=None, help="Service group, for grants covering several services.")
@click.option("--meeting-url", default=None)
@pass_app
@friendly_errors
def service_add(
    app: AppContext,
    slug: str,
    name: str,
    duration: int,
    buffer_before: int,
    buffer_after: int,
    min_notice: int,
    horizon_days: int,
    step: int,
    max_per_day: int | None,
    max_upcoming: int | None,
    cancel_refund_hours: int,
    group: str | None,
    meeting_url: str | None,
) -> None:
    """Add a service."""
    with app.session() as session:
        directory.add_service(
            session,
            slug,
            name=name,
            duration=duration,
            buffer_before=buffer_before,
            buffer_after=buffer_after,
            min_notice=min_notice,
            horizon_days=horizon_days,
            step=step,
            max_per_day=max_per_day,
            max_upcoming=max_upcoming,
            cancel_refund_hours=cancel_refund_hours,
            group=group,
            meeting_url=meeting_url,
        )
    click.echo(f"added service {slug}")


@service.command("assign")
@click.argument("slug")
@click.argument("mentor_ids", nargs=-1, required=True, metavar="MENTOR_ID...")
@pass_app
@friendly_errors
def service_assign(app: AppContext, slug: str, mentor_ids: tuple[str, ...]) -> None:
    """Let mentors give a service."""
    with app.session() as session:
        directory.assign_service(session, slug, mentor_ids)
    click.echo(f"service {slug}: assigned {', '.join(mentor_ids)}")


@service.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_app
@friendly_errors
def service_list(app: AppContext, as_json: bool) -> None:
    """List services and their mentors."""
    with app.session() as session:
        rows: list[dict[str, Any]] = [
            {
                "slug": s.slug,
                "name": s.name,
                "duration": s.duration_min,
                "buffer_before": s.buffer_before_min,
                "buffer_after": s.buffer_after_min,
                "min_notice": s.min_notice_min,
                "horizon_days": s.horizon_days,
                "step": s.step_min,
                "max_per_day": s.max_per_day,
                "max_upcoming": s.max_upcoming,
                "cancel_refund_hours": s.cancel_refund_hours,
                "group": s.service_group,
                "mentors": repo.mentor_ids_for_service(session, s.slug),
            }
            for s in repo.list_services(session)
        ]
    if as_json:
        _emit_json(rows)
        return
    for row in rows:
        click.echo(
            f"{row['slug']}\t{row['name']}\t{row['duration']} min\t{', '.join(row['mentors'])}"
        )


@cli.group()
def student() -> None:
    """Students."""


@student.command("add")
@click.argument("student_id")
@click.option("--name", required=True)
@click.option("--email", required=True)
@click.option("--timezone", "tz", required=True, help="IANA zone, e.g. Asia/Kolkata.")
@pass_app
@friendly_errors
def student_add(app: AppContext, student_id: str, name: str, email: str, tz: str) -> None:
    """Add a student."""
    with app.session() as session:
        directory.add_student(session, student_id, name=name, email=email, timezone=tz)
    click.echo(f"added student {student_id}")


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
        _emit_json(rows)
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
        _emit_json(data)
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
        _emit_json(_booking_json(booking))
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
        _emit_json({**_booking_json(result.booking), "refunded": result.refunded})
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
        _emit_json(_booking_json(booking))
    else:
        click.echo(f"rescheduled {booking_id} to {booking.start.isoformat()}")


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
        _emit_json(data)
        return
    for item in data:
        click.echo(
            f"{item['id']}  {item['start']}  {item['service']}  {item['mentor']} -> {item['student']}  {item['status']}"
        )


# -- daemon -----------------------------------------------------------------------------------


@cli.command("run")
@click.option("--once", is_flag=True, help="Run every job once and exit (for cron and tests).")
@click.pass_context
@friendly_errors
def run_command(ctx: click.Context, once: bool) -> None:
    """Run the daemon: calendar sync, outbox, housekeeping, HTTP health and metrics."""
    from syncd import daemon  # the daemon's dependencies are only needed here

    app = ctx.find_object(AppContext)
    assert app is not None
    verbose = bool(ctx.find_root().params.get("verbose"))
    status = daemon.run(app.config_path, app.database_url, once=once, verbose=verbose)
    ctx.exit(status)


# -- page links -------------------------------------------------------------------------------


@cli.group()
def link() -> None:
    """Signed, expiring links to the mentor and student pages."""


def _print_link(app: AppContext, kind: str, subject_id: str, days: int) -> None:
    from syncd import links  # imported here: only these commands need it

    with app.session() as session:
        if kind == "mentor":
            directory.require_mentor(session, subject_id)
        else:
            directory.require_student(session, subject_id)
    expires = links.link_expiry(utc_now(), days)
    token = links.sign_link(links.require_secret_key(app.config), kind, subject_id, expires)  # type: ignore[arg-type]
    public_url = app.config.require_type("http", "public_url", str, "http://127.0.0.1:8080")
    click.echo(links.page_url(str(public_url), kind, token))  # type: ignore[arg-type]


@link.command("mentor")
@click.argument("mentor_id")
@click.option("--days", type=int, default=30, show_default=True, help="How long the link works.")
@pass_app
@friendly_errors
def link_mentor(app: AppContext, mentor_id: str, days: int) -> None:
    """Print a link to the mentor's page (hours, calendars)."""
    _print_link(app, "mentor", mentor_id, days)


@link.command("student")
@click.argument("student_id")
@click.option("--days", type=int, default=30, show_default=True, help="How long the link works.")
@pass_app
@friendly_errors
def link_student(app: AppContext, student_id: str, days: int) -> None:
    """Print a link to the student's booking page."""
    _print_link(app, "student", student_id, days)


# -- calendars (syncd.calendars, syncd.sync) ---------------------------------------------------


@cli.group()
def calendar() -> None:
    """Mentors' calendars: connect, list, configure, pull now."""


@calendar.group("add")
@click.argument("mentor_id")
@click.pass_context
def calendar_add(ctx: click.Context, mentor_id: str) -> None:
    """Connect a calendar account: `syncd calendar add MENTOR_ID caldav|google ...`."""
    ctx.meta["syncd.mentor_id"] = mentor_id


def _read_password(password_file: str | None, password_env: str | None) -> Any:
    """The password from a file ("-" = stdin) or an environment variable, never argv."""
    import os

    from syncd.secrets import Secret

    if (password_file is None) == (password_env is None):
        raise UserError("give exactly one of --password-file FILE or --password-env VAR")
    if password_env is not None:
        value = os.environ.get(password_env)
        if not value:
            raise UserError(f"environment variable {password_env} is not set")
        return Secret(value)
    assert password_file is not None
    try:
        if password_file == "-":
            text = sys.stdin.read()
        else:
            with open(password_file, encoding="utf-8") as handle:
                text = handle.read()
    except OSError as error:
        raise UserError(f"cannot read --password-file {password_file}: {error.strerror}") from None
    return Secret(text.rstrip("\r\n"))


def _print_connected(connected: Any) -> None:
    chosen = {c.remote_id for c in connected.calendars}
    click.echo(f"account {connected.account_id}: found {len(connected.found)} calendar(s)")
    for info in connected.found:
        row = next((c for c in connected.calendars if c.remote_id == info.remote_id), None)
        mark = f"added as {row.id}" if row else "not added"
        dest = ", destination" if row and row.is_destination else ""
        click.echo(f"  {info.name} <{info.remote_id}> tz={info.timezone or '-'}: {mark}{dest}")
    if not chosen:
        click.echo("  (no calendar added)")


@calendar_add.command("caldav")
@click.argument("url", required=False)
@click.option("--url", "url_option", metavar="URL", help="Server, principal or calendar URL.")
@click.option("--username", metavar="USER")
@click.option("--password-file", metavar="FILE", help="File holding the password ('-' = stdin).")
@click.option("--password-env", metavar="VAR", help="Environment variable holding the password.")
@click.option(
    "--calendar",
    "calendars",
    multiple=True,
    metavar="URL|NAME",
    help="Add only these (repeatable).",
)
@click.option(
    "--destination",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[URL|NAME]",
    help="The calendar that receives booked sessions.",
)
@click.pass_context
@friendly_errors
def calendar_add_caldav(
    ctx: click.Context,
    url: str | None,
    url_option: str | None,
    username: str | None,
    password_file: str | None,
    password_env: str | None,
    calendars: tuple[str, ...],
    destination: str | None,
) -> None:
    """Connect a CalDAV account (tests the connection first)."""
    from syncd import calendars as service

    app = ctx.find_object(AppContext)
    assert app is not None
    if (url is None) == (url_option is None):
        raise UserError("give the URL once, as an argument or with --url")
    password = _read_password(password_file, password_env)
    connected = service.connect_caldav(
        app.database(), app.config, ctx.meta["syncd.mentor_id"], str(url or url_option), username,
        password, service.Selection(calendars, destination),
    )  # fmt: skip
    _print_connected(connected)


@calendar_add.command("google")
@click.option(
    "--calendar-id",
    "calendar_ids",
    multiple=True,
    metavar="ID",
    help="Default: the primary calendar.",
)
@click.option(
    "--destination",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[ID]",
    help="The calendar that receives booked sessions.",
)
@click.option("--client-secrets", metavar="FILE", help="OAuth client JSON: runs the consent flow.")
@click.option("--token-file", metavar="FILE", help="An authorized-user JSON (no browser needed).")
@click.pass_context
@friendly_errors
def calendar_add_google(
    ctx: click.Context,
    calendar_ids: tuple[str, ...],
    destination: str | None,
    client_secrets: str | None,
    token_file: str | None,
) -> None:
    """Connect a Google account (prints the consent URL, or takes a token file)."""
    from syncd import calendars as service

    app = ctx.find_object(AppContext)
    assert app is not None
    if (client_secrets is None) == (token_file is None):
        raise UserError("give exactly one of --client-secrets FILE or --token-file FILE")
    selection = service.Selection(calendar_ids, destination)
    mentor_id = ctx.meta["syncd.mentor_id"]
    if token_file is not None:
        connected = service.connect_google_token_file(
            app.database(), app.config, mentor_id, token_file, selection
        )
    else:
        assert client_secrets is not None
        connected = service.connect_google_flow(
            app.database(), app.config, mentor_id, client_secrets, selection
        )
    _print_connected(connected)


@calendar.command("list")
@click.argument("mentor_id", required=False)
@click.option("--json", "as_json", is_flag=True)
@pass_app
@friendly_errors
def calendar_list(app: AppContext, mentor_id: str | None, as_json: bool) -> None:
    """Connected calendars and their sync status."""
    from syncd.calendars import calendar_statuses

    statuses = calendar_statuses(app.database(), mentor_id)
    if as_json:
        _emit_json([status.as_json() for status in statuses])
        return
    for s in statuses:
        flags = [
            f for f, on in (("blocks", s.blocks_time), ("destination", s.is_destination)) if on
        ]
        state = (
            "NEEDS RECONNECT"
            if s.needs_reconnect
            else ("ok" if s.last_success else "not synced yet")
        )
        if s.consecutive_failures and not s.needs_reconnect:
            state = f"failing ({s.consecutive_failures}x)"
        last = s.last_success.isoformat() if s.last_success else "-"
        click.echo(
            f"{s.id}  {s.mentor_id}  {s.provider}  {s.name}  [{', '.join(flags) or 'ignored'}]  {state}  last sync {last}"
        )
        if s.last_error:
            click.echo(f"    last error: {s.last_error}")


@calendar.command("set")
@click.argument("calendar_id", type=int)
@click.option("--blocks/--no-blocks", default=None, help="Whether its events block time.")
@click.option("--destination", is_flag=True, help="Make it the mentor's destination calendar.")
@pass_app
@friendly_errors
def calendar_set(app: AppContext, calendar_id: int, blocks: bool | None, destination: bool) -> None:
    """Change whether a calendar blocks time, or make it the destination."""
    from syncd.calendars import configure_calendar

    status = configure_calendar(app.database(), calendar_id, blocks=blocks, destination=destination)
    click.echo(
        f"calendar {status.id}: blocks={status.blocks_time} destination={status.is_destination}"
    )


@calendar.command("remove")
@click.argument("calendar_id", type=int)
@pass_app
@friendly_errors
def calendar_remove(app: AppContext, calendar_id: int) -> None:
    """Forget a calendar and its busy time (the events in it stay)."""
    from syncd.calendars import remove_calendar

    remove_calendar(app.database(), calendar_id)
    click.echo(f"removed calendar {calendar_id}")


@calendar.command("sync")
@click.argument("calendar_id", type=int, required=False)
@click.option("--mentor", "mentor_id", metavar="ID", help="Only this mentor's calendars.")
@pass_app
@friendly_errors
def calendar_sync(app: AppContext, calendar_id: int | None, mentor_id: str | None) -> None:
    """Pull calendars now (all, one, or a mentor's) and print a summary."""
    from syncd.sync import sync_now

    ids = [calendar_id] if calendar_id is not None else None
    outcomes = sync_now(
        app.database(), app.config, calendar_ids=ids, mentor_id=mentor_id, now=utc_now()
    )
    for outcome in outcomes:
        r = outcome.result
        if r is None:
            click.echo(f"calendar {outcome.calendar_id}: failed: {outcome.error}")
        else:
            kind = "full" if r.full else "incremental"
            click.echo(
                f"calendar {r.calendar_id}: {kind}, {r.upserted} changed, {r.deleted} deleted, {len(r.malformed)} malformed"
            )
    if any(outcome.result is None for outcome in outcomes):
        sys.exit(1)


@cli.command("sync")
@click.option("--mentor", "mentor_id", metavar="ID", help="Only this mentor's calendars.")
@click.pass_context
def sync_command(ctx: click.Context, mentor_id: str | None) -> None:
    """One pull pass over every calendar (or a mentor's) now; prints a summary."""
    ctx.invoke(calendar_sync, calendar_id=None, mentor_id=mentor_id)


@cli.group()
def secret() -> None:
    """The key that encrypts calendar credentials at rest."""


@secret.command("generate")
def secret_generate() -> None:
    """Print a new secret key (for $SYNCD_SECRET_KEY or the key file)."""
    from syncd.secrets import generate_key

    click.echo(generate_key())


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="syncd", standalone_mode=True)
    except UserError as error:  # raised outside a command, e.g. while closing
        _fail(str(error))
