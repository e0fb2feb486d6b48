"""Services with their mentors, and bookable slots: the same answers as `syncd slots --json`."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import TypeAdapter

from syncd.api.auth import CurrentPrincipal
from syncd.api.context import ApiContext, Context
from syncd.api.schemas import EARLIEST_YEAR, LATEST_YEAR, ServiceOut, SlotOut
from syncd.errors import UserError
from syncd.slots import MAX_DAYS, find_slots
from syncd.store import repo
from syncd.timeutil import zone

router = APIRouter(tags=["catalog"])
SLOTS_JSON = TypeAdapter(list[SlotOut])


@router.get("/services", response_model=list[ServiceOut], summary="Services and their mentors")
def list_services(context: Context, principal: CurrentPrincipal) -> list[ServiceOut]:
    with context.db.session() as session:
        return [
            # Unlisted mentors stay bookable by id but are not advertised.
            ServiceOut.of(
                service,
                [m for m in repo.bookable_mentors(session, service.slug) if m.status == "active"],
            )
            for service in repo.list_services(session)
        ]


@router.get("/services/{slug}/slots", response_model=list[SlotOut], summary="Bookable slots")
def list_slots(
    context: Context,
    principal: CurrentPrincipal,
    slug: str,
    tz: Annotated[str, Query(description="IANA zone the slots are shown in, e.g. Asia/Kolkata.")],
    first_day: Annotated[
        date | None, Query(alias="from", description="First local date (default: today in tz).")
    ] = None,
    days: Annotated[int, Query(ge=1, le=MAX_DAYS)] = 7,
    mentor: Annotated[str | None, Query(description="Only this mentor's slots.")] = None,
) -> Response:
    student_zone = zone(tz)
    now = context.settings.clock()
    first = first_day or now.astimezone(student_zone).date()
    if not EARLIEST_YEAR <= first.year <= LATEST_YEAR:
        raise UserError(f"from must be between the years {EARLIEST_YEAR} and {LATEST_YEAR}")
    # Identical queries in flight at the same moment share one computation, and its JSON:
    # returning the encoded body skips re-validating hundreds of slots per request.
    body = context.slots.run(
        (slug, tz, first, days, mentor),
        lambda: SLOTS_JSON.dump_json(_slots(context, slug, tz, first, days, mentor, now)),
    )
    return Response(body, media_type="application/json")


def _slots(
    context: ApiContext,
    slug: str,
    tz: str,
    first: date,
    days: int,
    mentor: str | None,
    now: datetime,
) -> list[SlotOut]:
    student_zone = zone(tz)
    with context.db.session() as session:
        found = find_slots(
            session, slug, tz_name=tz, first_day=first, days=days, now=now, mentor_id=mentor
        )
    return [
        SlotOut(
            start=slot.start.astimezone(student_zone).isoformat(),
            end=slot.end.astimezone(student_zone).isoformat(),
            mentors=list(slot.mentors),
        )
        for slot in found
    ]
