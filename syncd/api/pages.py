"""Server-rendered pages reached through signed links. Each page is plain HTML plus one small
script (no build step) that talks to the /v1 API with the link token."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from syncd import invites, links
from syncd.api.auth import AuthError
from syncd.api.context import ApiContext, get_context
from syncd.directory import require_mentor, require_service, require_student
from syncd.errors import NotFoundError
from syncd.hours import WEEKDAYS
from syncd.store import repo

HERE = Path(__file__).parent
DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
WEEKDAY_NAMES = tuple(zip(WEEKDAYS, DAY_NAMES, strict=True))
templates = Jinja2Templates(directory=HERE / "templates")


def _claims(context: ApiContext, token: str, kind: links.LinkKind) -> links.LinkClaims:
    secret = context.settings.secret_key
    if secret is None:
        raise AuthError(401, "unauthorized", "page links are disabled")
    try:
        claims = links.verify_link(secret, token, now=context.settings.clock())
    except links.InvalidLink as error:
        raise AuthError(401, "unauthorized", str(error)) from None
    if claims.kind != kind:
        raise AuthError(403, "forbidden", f"this is not a {kind} link")
    return claims


def mentor_claims(context: ApiContext, token: str) -> links.LinkClaims:
    return _claims(context, token, "mentor")


# What the Google callback reports back to the page (only these fixed texts are ever shown).
GOOGLE_NOTICES = {
    "connected": "Google Calendar is connected. Choose below which calendars block your time.",
    "denied": "Google sign-in was cancelled; nothing was connected.",
    "failed": "Google Calendar could not be connected. Please try again.",
}


def mentor_page(request: Request, token: str, google: str | None = None) -> HTMLResponse:
    context = get_context(request)
    claims = mentor_claims(context, token)
    with context.db.session() as session:
        mentor = require_mentor(session, claims.subject_id)
    google_ready = bool(context.settings.config.get("google", "client_secrets_file", None))
    return templates.TemplateResponse(
        request,
        "mentor.html",
        {
            "mentor": mentor,
            "token": token,
            "expires": claims.expires,
            "google_ready": google_ready,
            "notice": GOOGLE_NOTICES.get(google or ""),
            "weekdays": WEEKDAY_NAMES,
        },
    )


def student_page(request: Request, token: str) -> HTMLResponse:
    context = get_context(request)
    claims = _claims(context, token, "student")
    with context.db.session() as session:
        student = require_student(session, claims.subject_id)
    return templates.TemplateResponse(
        request,
        "student.html",
        {"student": student, "token": token, "expires": claims.expires},
    )


def booking_ics(request: Request, token: str, booking_id: str) -> Response:
    """ "Add to calendar": the booking as an .ics file, for the student's own bookings only."""
    context = get_context(request)
    claims = _claims(context, token, "student")
    with context.db.session() as session:
        booking = repo.get_booking(session, booking_id)
        if booking is None or booking.student_id != claims.subject_id:
            raise NotFoundError(f"unknown booking {booking_id!r}")
        mentor = require_mentor(session, booking.mentor_id)
        student = require_student(session, booking.student_id)
        service = require_service(session, booking.service_slug)
    details = invites.InviteDetails(
        booking_id=booking.id,
        sequence=booking.sequence,
        start=booking.start,
        end=booking.end,
        service_name=service.name,
        mentor_name=mentor.name,
        mentor_email=mentor.email,
        student_name=student.name,
        student_email=student.email,
        student_timezone=student.timezone,
        meeting_url=service.meeting_url or mentor.meeting_url,
        organizer_email=context.settings.organizer_email,
        dtstamp=context.settings.clock(),
    )
    method: invites.Method = "CANCEL" if booking.status == "cancelled" else "REQUEST"
    return Response(
        invites.build_calendar(details, method),
        media_type="text/calendar; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="session-{booking.id[:8]}.ics"'},
    )


def install(app: FastAPI) -> None:
    app.mount("/static/syncd", StaticFiles(directory=HERE / "static"), name="syncd-static")
    app.add_api_route("/s/{token}", student_page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/m/{token}", mentor_page, methods=["GET"], include_in_schema=False)
    app.add_api_route(
        "/s/{token}/bookings/{booking_id}.ics",
        booking_ics,
        methods=["GET"],
        include_in_schema=False,
    )
