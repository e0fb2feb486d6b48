"""Admin operations on mentors, services and students, with validation at the boundary."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date

from sqlalchemy.orm import Session

from syncd.errors import NotFoundError, UserError
from syncd.hours import TimeRange, parse_hours_spec, parse_time_range
from syncd.store import repo
from syncd.store.models import MENTOR_STATUSES, DateOverride, Mentor, Service, Student, WeeklyHours
from syncd.timeutil import zone

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_EMAIL = re.compile(r"^[^@\s<>\"]+@[^@\s<>\"]+$")


def check_id(kind: str, value: str) -> str:
    if not _ID.match(value):
        raise UserError(
            f"invalid {kind} id {value!r}: use letters, digits, '.', '_' or '-' (max 64)"
        )
    return value


def check_email(value: str) -> str:
    if not _EMAIL.match(value) or len(value) > 320:
        raise UserError(f"invalid email address {value!r}")
    return value


def check_name(value: str) -> str:
    cleaned = " ".join(value.split())  # also drops CR/LF that could end up in mail headers
    if not cleaned or len(cleaned) > 200:
        raise UserError("a name must have 1 to 200 characters")
    return cleaned


def require_mentor(session: Session, mentor_id: str) -> Mentor:
    mentor = repo.get_mentor(session, mentor_id)
    if mentor is None:
        raise NotFoundError(f"unknown mentor {mentor_id!r}")
    return mentor


def require_service(session: Session, slug: str) -> Service:
    service = repo.get_service(session, slug)
    if service is None:
        raise NotFoundError(f"unknown service {slug!r}")
    return service


def require_student(session: Session, student_id: str) -> Student:
    student = repo.get_student(session, student_id)
    if student is None:
        raise NotFoundError(f"unknown student {student_id!r}")
    return student


def add_mentor(
    session: Session,
    mentor_id: str,
    *,
    name: str,
    email: str,
    timezone: str,
    status: str = "active",
) -> Mentor:
    check_id("mentor", mentor_id)
    zone(timezone)
    if status not in MENTOR_STATUSES:
        raise UserError(f"invalid status {status!r}: one of {', '.join(MENTOR_STATUSES)}")
    if repo.get_mentor(session, mentor_id) is not None:
        raise UserError(f"mentor {mentor_id!r} already exists")
    mentor = Mentor(
        id=mentor_id,
        name=check_name(name),
        email=check_email(email),
        timezone=timezone,
        status=status,
    )
    session.add(mentor)
    return mentor


def set_mentor_status(session: Session, mentor_id: str, status: str) -> None:
    if status not in MENTOR_STATUSES:
        raise UserError(f"invalid status {status!r}: one of {', '.join(MENTOR_STATUSES)}")
    require_mentor(session, mentor_id).status = status


def set_weekly_hours(session: Session, mentor_id: str, specs: Sequence[str]) -> list[WeeklyHours]:
    mentor = require_mentor(session, mentor_id)
    rows = [
        WeeklyHours(mentor_id=mentor.id, weekday=day, start_time=span.start, end_time=span.end)
        for spec in specs
        for day, span in parse_hours_spec(spec)
    ]
    repo.replace_weekly_hours(session, mentor, rows)
    return rows


def set_override(session: Session, mentor_id: str, day: date, ranges: Sequence[str]) -> None:
    """Replace one local date's hours; no ranges marks the date unavailable."""
    mentor = require_mentor(session, mentor_id)
    spans: list[TimeRange | None] = [parse_time_range(text) for text in ranges] or [None]
    rows = [
        DateOverride(
            mentor_id=mentor.id,
            day=day,
            start_time=span.start if span else None,
            end_time=span.end if span else None,
        )
        for span in spans
    ]
    repo.replace_override(session, mentor, rows)


def add_service(
    session: Session,
    slug: str,
    *,
    name: str,
    duration: int,
    buffer_before: int = 0,
    buffer_after: int = 0,
    min_notice: int = 0,
    horizon_days: int = 14,
    step: int = 15,
    max_per_day: int | None = None,
    max_upcoming: int | None = None,
    cancel_refund_hours: int = 24,
    group: str | None = None,
    meeting_url: str | None = None,
) -> Service:
    check_id("service", slug)
    _check_service_numbers(duration, buffer_before, buffer_after, min_notice, horizon_days, step)
    for label, limit in (("max per day", max_per_day), ("max upcoming", max_upcoming)):
        if limit is not None and limit < 1:
            raise UserError(f"{label} must be at least 1")
    if cancel_refund_hours < 0:
        raise UserError("cancel refund hours cannot be negative")
    if repo.get_service(session, slug) is not None:
        raise UserError(f"service {slug!r} already exists")
    service = Service(
        slug=slug,
        name=check_name(name),
        duration_min=duration,
        buffer_before_min=buffer_before,
        buffer_after_min=buffer_after,
        min_notice_min=min_notice,
        horizon_days=horizon_days,
        step_min=step,
        max_per_day=max_per_day,
        max_upcoming=max_upcoming,
        cancel_refund_hours=cancel_refund_hours,
        service_group=check_id("group", group) if group else None,
        meeting_url=meeting_url,
    )
    session.add(service)
    return service


def _check_service_numbers(
    duration: int, before: int, after: int, notice: int, horizon: int, step: int
) -> None:
    if not 1 <= duration <= 24 * 60:
        raise UserError("duration must be between 1 and 1440 minutes")
    if not 1 <= step <= 24 * 60:
        raise UserError("step must be between 1 and 1440 minutes")
    if min(before, after, notice) < 0:
        raise UserError("buffers and minimum notice cannot be negative")
    if not 1 <= horizon <= 365:
        raise UserError("horizon must be between 1 and 365 days")


def assign_service(session: Session, slug: str, mentor_ids: Sequence[str]) -> None:
    service = require_service(session, slug)
    for mentor_id in mentor_ids:
        require_mentor(session, mentor_id)
    repo.assign_mentors(session, service, mentor_ids)


def add_student(
    session: Session, student_id: str, *, name: str, email: str, timezone: str
) -> Student:
    check_id("student", student_id)
    zone(timezone)
    if repo.get_student(session, student_id) is not None:
        raise UserError(f"student {student_id!r} already exists")
    student = Student(
        id=student_id, name=check_name(name), email=check_email(email), timezone=timezone
    )
    session.add(student)
    return student
