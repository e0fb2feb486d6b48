"""`make demo`: the whole product working on one machine, with nothing to set up.

1. A state folder (default ./demo-state) holds the SQLite database, a generated secret key
   (mode 0600), the config file, Radicale's storage and passwords, and mail/ for invites.
2. An embedded Radicale (a thread of this process, on 127.0.0.1) gets seeded calendars for the
   two mentors: a weekly meeting, an all-day event, a free (transparent) block and an event
   across the next DST change of the mentor's zone.
3. Through the real CLI: the academy (mentors, service, student, quota), `calendar add`,
   `sync`, the student's slots, one booking, `run --once` (writes the event into the mentor's
   calendar and the invite into mail/), then the event fetched back over CalDAV.
4. The page links, then the real daemon in the foreground until Ctrl-C (skipped with --once).

Running it again reuses the state: nothing is added twice.
"""

from __future__ import annotations

import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from syncd.demo.common import STUDENT, STUDENT_ZONE
from syncd.demo.daemon import raise_interrupt, run_once, serve_forever
from syncd.demo.dav_server import WORK_CALENDAR, DavAccount, embedded_radicale, seed_calendars
from syncd.demo.ports import daemon_port
from syncd.demo.results import book_first_slot, show_booked_event, show_invite
from syncd.demo.seed import BOOKED_MENTOR, MENTORS, describe_event, seed_events
from syncd.demo.state import DemoState, point_environment_at, prepare_state, write_config
from syncd.demo.steps import (
    check_busy_excluded,
    connect_calendars,
    seed_academy,
    show_dst,
    student_slots,
    syncd,
)

SLOT_DAYS = 7


def heading(text: str) -> None:
    click.echo(f"\n== {text}")


def demo(state: DemoState, once: bool) -> None:
    key = prepare_state(state)
    port = daemon_port()
    write_config(state, port)
    point_environment_at(state, key)
    click.echo(
        f"demo state: {state.root} (config {state.config.name}, key {state.secret_key.name})"
    )
    click.echo(
        f"to use it yourself: export SYNCD_CONFIG={state.config} SYNCD_SECRET_KEY=$(cat {state.secret_key})"
    )
    heading("the academy")
    seed_academy()
    with embedded_radicale(state) as dav_root:
        booking_id = show_product(state, dav_root)
        heading("page links")
        syncd("link", "student", STUDENT)
        syncd("link", "mentor", BOOKED_MENTOR.id)
        if not once:
            serve_forever(port)
    click.echo(f"\ndone: booking {booking_id}; run again to reuse this state")


def show_product(state: DemoState, dav_root: str) -> str:
    now = datetime.now(UTC)
    accounts = [
        DavAccount(dav_root, m.id, state.password(m.id).read_text().strip()) for m in MENTORS
    ]
    events = {m.id: seed_events(m, now) for m in MENTORS}
    heading(f"embedded Radicale at {dav_root} (storage {state.radicale})")
    for mentor, account in zip(MENTORS, accounts, strict=True):
        seed_calendars(account, events[mentor.id])
        click.echo(f"{mentor.id}'s calendar {account.calendar_url(WORK_CALENDAR)}:")
        for event in events[mentor.id]:
            click.echo(f"  {describe_event(event, ZoneInfo(mentor.zone))}")
    heading("connect and pull the calendars")
    connect_calendars(state, accounts)
    syncd("sync")
    heading(f"{STUDENT}'s slots for the next {SLOT_DAYS} days, seeded busy time excluded")
    found = student_slots(SLOT_DAYS)
    first = now.astimezone(ZoneInfo(STUDENT_ZONE)).date() - timedelta(days=1)
    for mentor in MENTORS:
        check_busy_excluded(mentor, found, events[mentor.id], first, SLOT_DAYS + 2)
    show_dst(BOOKED_MENTOR, events[BOOKED_MENTOR.id], now)
    heading("book, then let the outbox write the event and the invite")
    booking_id = book_first_slot(found, BOOKED_MENTOR.id)
    run_once()
    show_booked_event(accounts[0], BOOKED_MENTOR.zone, booking_id)
    show_invite(state, booking_id)
    return booking_id


@click.command()
@click.option(
    "--state",
    "state_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-state"),
    envvar="DEMO_STATE",
    show_default=True,
    help="Folder for the database, key, Radicale storage and mail.",
)
@click.option("--once", is_flag=True, envvar="DEMO_ONCE",
              help="Stop after the walkthrough instead of running the daemon.")  # fmt: skip
def main(state_dir: Path, once: bool) -> None:
    """Show syncd working end to end: Radicale, sync, slots, booking, invite, daemon."""
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in background
    signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        demo(DemoState(state_dir.resolve()), once)
    except KeyboardInterrupt:
        click.echo("\ninterrupted", err=True)
        sys.exit(130)
