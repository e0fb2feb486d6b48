"""A mentor's own settings: working hours, date overrides and calendar connections.

Admin and app keys may read and change any mentor; a read-only key may read; a mentor link
only its own mentor (`auth.require_mentor_writer`); student links never.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Path, Response, status
from sqlalchemy.orm import Session

from syncd import calendars, directory
from syncd.api import auth
from syncd.api.auth import CurrentPrincipal
from syncd.api.connect import connect_caldav_account
from syncd.api.context import ApiContext, Context
from syncd.api.schemas import EARLIEST_YEAR, LATEST_YEAR
from syncd.api.schemas_mentor import (
    CalDAVConnectIn,
    CalendarPatch,
    CalendarStatusOut,
    ConnectedOut,
    HoursIn,
    HoursOut,
    OverrideIn,
    override_rows,
)
from syncd.directory import require_mentor
from syncd.errors import NotFoundError, UserError
from syncd.store import calendars as calendar_store
from syncd.store.models import Calendar
from syncd.timeutil import zone

log = logging.getLogger(__name__)
router = APIRouter(tags=["mentors"])
MentorId = Annotated[str, Path(max_length=64)]
CalendarId = Annotated[int, Path(ge=1, le=2**31 - 1)]


# -- hours --------------------------------------------------------------------------------


def _hours(context: ApiContext, mentor_id: str) -> HoursOut:
    with context.db.session() as session:
        mentor = require_mentor(session, mentor_id)
        today = context.settings.clock().astimezone(zone(mentor.timezone)).date()
        return HoursOut.of(mentor, today)


@router.get("/mentors/{mentor_id}/hours", response_model=HoursOut, summary="Working hours")
def get_hours(context: Context, principal: CurrentPrincipal, mentor_id: MentorId) -> HoursOut:
    auth.require_mentor_access(principal, mentor_id)
    return _hours(context, mentor_id)


@router.put("/mentors/{mentor_id}/hours", response_model=HoursOut, summary="Set weekly hours")
def put_hours(
    context: Context, principal: CurrentPrincipal, mentor_id: MentorId, body: HoursIn
) -> HoursOut:
    auth.require_mentor_writer(principal, mentor_id)
    with context.db.write_session() as session:
        directory.set_weekly_hours(session, mentor_id, body.specs)
    log.info("api: %s set the weekly hours of %s", principal.name, mentor_id)
    return _hours(context, mentor_id)


def _check_day(day: date) -> None:
    if not EARLIEST_YEAR <= day.year <= LATEST_YEAR:
        raise UserError(f"the date must be between the years {EARLIEST_YEAR} and {LATEST_YEAR}")


@router.put(
    "/mentors/{mentor_id}/overrides/{day}",
    response_model=HoursOut,
    summary="Set one date's hours (or mark it unavailable)",
)
def put_override(
    context: Context, principal: CurrentPrincipal, mentor_id: MentorId, day: date, body: OverrideIn
) -> HoursOut:
    auth.require_mentor_writer(principal, mentor_id)
    _check_day(day)
    with context.db.write_session() as session:
        directory.set_override(session, mentor_id, day, body.ranges)
    log.info("api: %s set the hours of %s on %s", principal.name, mentor_id, day)
    return _hours(context, mentor_id)


@router.delete(
    "/mentors/{mentor_id}/overrides/{day}",
    response_model=HoursOut,
    summary="Drop a date's override (its weekly hours apply again)",
)
def delete_override(
    context: Context, principal: CurrentPrincipal, mentor_id: MentorId, day: date
) -> HoursOut:
    auth.require_mentor_writer(principal, mentor_id)
    _check_day(day)
    with context.db.write_session() as session:
        _drop_override(session, mentor_id, day)
    log.info("api: %s dropped the override of %s on %s", principal.name, mentor_id, day)
    return _hours(context, mentor_id)


def _drop_override(session: Session, mentor_id: str, day: date) -> None:
    mentor = require_mentor(session, mentor_id)
    # The relationship deletes orphans, so removing the rows from it deletes them.
    for row in override_rows(mentor, day):
        mentor.overrides.remove(row)


# -- calendars ----------------------------------------------------------------------------


def _statuses(context: ApiContext, mentor_id: str) -> list[CalendarStatusOut]:
    now = context.settings.clock()
    return [
        CalendarStatusOut.of_status(row, now)
        for row in calendars.calendar_statuses(context.db, mentor_id)
    ]


@router.get(
    "/mentors/{mentor_id}/calendar-status",
    response_model=list[CalendarStatusOut],
    summary="Calendar connections, with their sync state in words",
)
def calendar_status(
    context: Context, principal: CurrentPrincipal, mentor_id: MentorId
) -> list[CalendarStatusOut]:
    auth.require_mentor_access(principal, mentor_id)
    return _statuses(context, mentor_id)


def _own_calendar(context: ApiContext, mentor_id: str, calendar_id: int) -> Calendar:
    """The calendar when it is this mentor's; 404 otherwise, so ids cannot be probed."""
    with context.db.session() as session:
        require_mentor(session, mentor_id)
        calendar = calendar_store.get_calendar(session, calendar_id)
    if calendar is None or calendar.mentor_id != mentor_id:
        raise NotFoundError(f"mentor {mentor_id!r} has no calendar {calendar_id}")
    return calendar


@router.patch(
    "/mentors/{mentor_id}/calendars/{calendar_id}",
    response_model=list[CalendarStatusOut],
    summary="Choose whether a calendar blocks time and whether it receives sessions",
)
def patch_calendar(
    context: Context,
    principal: CurrentPrincipal,
    mentor_id: MentorId,
    calendar_id: CalendarId,
    body: CalendarPatch,
) -> list[CalendarStatusOut]:
    auth.require_mentor_writer(principal, mentor_id)
    _own_calendar(context, mentor_id, calendar_id)
    calendars.configure_calendar(
        context.db, calendar_id, blocks=body.blocks_time, destination=body.is_destination is True
    )
    if body.is_destination is False:
        _clear_destination(context, calendar_id)
    log.info("api: %s changed calendar %s of %s", principal.name, calendar_id, mentor_id)
    return _statuses(context, mentor_id)


def _clear_destination(context: ApiContext, calendar_id: int) -> None:
    with context.db.write_session() as session:
        calendar = calendar_store.get_calendar(session, calendar_id)
        if calendar is not None:
            calendar.is_destination = False


@router.delete(
    "/mentors/{mentor_id}/calendars/{calendar_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Disconnect a calendar (the account goes with its last calendar)",
)
def delete_calendar(
    context: Context, principal: CurrentPrincipal, mentor_id: MentorId, calendar_id: CalendarId
) -> Response:
    auth.require_mentor_writer(principal, mentor_id)
    _own_calendar(context, mentor_id, calendar_id)
    calendars.remove_calendar(context.db, calendar_id, config=context.settings.config)
    log.info("api: %s removed calendar %s of %s", principal.name, calendar_id, mentor_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/mentors/{mentor_id}/calendars/caldav",
    status_code=status.HTTP_201_CREATED,
    response_model=ConnectedOut,
    summary="Connect a CalDAV account (tested live, password stored encrypted)",
)
def connect_caldav(
    context: Context, principal: CurrentPrincipal, mentor_id: MentorId, body: CalDAVConnectIn
) -> ConnectedOut:
    auth.require_mentor_writer(principal, mentor_id)
    with context.db.session() as session:
        require_mentor(session, mentor_id)
    connected = connect_caldav_account(context.db, context.settings, mentor_id, body)
    log.info(
        "api: %s connected CalDAV account %s for %s",
        principal.name,
        connected.account_id,
        mentor_id,
    )
    return ConnectedOut(account_id=connected.account_id, calendars=_statuses(context, mentor_id))
