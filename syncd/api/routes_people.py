"""Per-person views: a student's quota, a mentor's calendar connections, and page links."""

from __future__ import annotations

import logging

from fastapi import APIRouter, status
from sqlalchemy import select

from syncd import links, quotas
from syncd.api import auth
from syncd.api.auth import CurrentPrincipal
from syncd.api.context import Context
from syncd.api.schemas import CalendarOut, LinkCreate, LinkOut, QuotaOut
from syncd.directory import require_mentor, require_student
from syncd.errors import UserError
from syncd.store import repo
from syncd.store.models import Calendar
from syncd.timeutil import zone

log = logging.getLogger(__name__)
router = APIRouter(tags=["people"])


@router.get("/students/{student_id}/quota", response_model=list[QuotaOut], summary="Quota balance")
def student_quota(context: Context, principal: CurrentPrincipal, student_id: str) -> list[QuotaOut]:
    auth.require_student_access(principal, student_id)
    with context.db.session() as session:
        student = require_student(session, student_id)
        today = context.settings.clock().astimezone(zone(student.timezone)).date()
        rows = quotas.summary(session, student, repo.list_services(session), today)
    return [QuotaOut.of(row) for row in rows]


@router.get(
    "/mentors/{mentor_id}/calendars",
    response_model=list[CalendarOut],
    summary="Calendar connections",
)
def mentor_calendars(
    context: Context, principal: CurrentPrincipal, mentor_id: str
) -> list[CalendarOut]:
    auth.require_mentor_access(principal, mentor_id)
    with context.db.session() as session:
        require_mentor(session, mentor_id)
        # TODO(lead): move into syncd.store.repo (e.g. repo.mentor_calendars) once it exists there.
        query = select(Calendar).where(Calendar.mentor_id == mentor_id).order_by(Calendar.id)
        return [CalendarOut.of(row) for row in session.scalars(query).all()]


@router.post(
    "/links",
    status_code=status.HTTP_201_CREATED,
    response_model=LinkOut,
    summary="A signed page link",
)
def create_link(context: Context, principal: CurrentPrincipal, body: LinkCreate) -> LinkOut:
    auth.require_key_role(principal, "admin", "app")
    secret = context.settings.secret_key
    if secret is None:
        raise UserError("page links are disabled: set [security] secret_key or $SYNCD_SECRET_KEY")
    with context.db.session() as session:
        if body.kind == "student":
            require_student(session, body.id)
        else:
            require_mentor(session, body.id)
    expires = links.link_expiry(context.settings.clock(), body.days)
    token = links.sign_link(secret, body.kind, body.id, expires)
    log.info("api: %s made a %s link for %s until %s", principal.name, body.kind, body.id, expires)
    return LinkOut(
        url=links.page_url(context.settings.public_url, body.kind, token), expires=expires
    )
