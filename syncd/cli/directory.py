"""`syncd db`, `syncd mentor`, `syncd service`, `syncd student`: the academy's catalogue."""

from __future__ import annotations

from typing import Any

import click
from sqlalchemy.orm import Session

from syncd import directory
from syncd.cli.base import AppContext, cli, emit_json, friendly_errors, pass_app
from syncd.store import repo
from syncd.store.models import Mentor
from syncd.timeutil import parse_date

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
        emit_json(rows)
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
        emit_json(rows)
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
