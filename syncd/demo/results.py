"""Booking a slot, then the results: the event fetched over CalDAV and the invite."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from email import message_from_bytes, policy
from typing import Any
from zoneinfo import ZoneInfo

import click

from syncd.demo.common import HTTP_TIMEOUT, SERVICE, STUDENT, DemoError
from syncd.demo.dav_server import SESSIONS_CALENDAR, DavAccount
from syncd.demo.state import DemoState
from syncd.demo.steps import Slot, syncd
from syncd.identity import booking_uid


def upcoming_booking(mentor_id: str) -> str | None:
    rows = json.loads(syncd("bookings", "--student", STUDENT, "--upcoming", "--json", show=False))
    return next((str(r["id"]) for r in rows if r["mentor"] == mentor_id), None)


def book_first_slot(found: Sequence[Slot], mentor_id: str) -> str:
    existing = upcoming_booking(mentor_id)
    if existing is not None:
        click.echo(f"{STUDENT} already has an upcoming session with {mentor_id}: {existing}")
        return existing
    slot = next((s for s in found if mentor_id in s.mentors), None)
    if slot is None:
        raise DemoError(f"no slot of {mentor_id} to book this week")
    return syncd("book", SERVICE, "--mentor", mentor_id, "--student", STUDENT,
                 "--start", slot.start.isoformat()).strip()  # fmt: skip


def show_booked_event(account: DavAccount, zone: str, booking_id: str) -> None:
    from caldav.davclient import DAVClient  # only needed here

    url = account.calendar_url(SESSIONS_CALENDAR)
    dav: Any = DAVClient(
        url=url, username=account.username, password=account.password, timeout=int(HTTP_TIMEOUT)
    )
    with dav as client:
        calendar = client.calendar(url=url)
        count = len(calendar.events())
        event = calendar.event_by_uid(booking_uid(booking_id)).icalendar_component
    click.echo(f"\n{account.username}'s calendar {url} (fetched over CalDAV): {count} event(s)")
    click.echo(f"  SUMMARY: {event['SUMMARY']}")
    start = event.decoded("DTSTART")
    local = start.astimezone(ZoneInfo(zone)) if isinstance(start, datetime) else start
    click.echo(f"  DTSTART: {start.isoformat()}  ({local:%a %d %b %H:%M} {zone})")
    click.echo(f"  UID:     {event['UID']}")


def show_invite(state: DemoState, booking_id: str) -> None:
    found = sorted(state.mail.glob(f"syncd-{booking_id}.*.eml"))
    if not found:
        raise DemoError(f"no invite for booking {booking_id} in {state.mail}")
    message = message_from_bytes(found[-1].read_bytes(), policy=policy.default)
    click.echo(f"\nInvite (no [smtp] configured, so written to {state.mail}/):")
    click.echo(f"  {found[-1].name}")
    click.echo(f"  To: {message['To']}\n  Subject: {message['Subject']}")
