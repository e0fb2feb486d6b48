"""The walkthrough's steps through the in-process CLI: the academy, calendars and slots."""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import groupby
from zoneinfo import ZoneInfo

import click
from click.testing import CliRunner

from syncd.cli import cli
from syncd.demo.common import HOST, SERVICE, STUDENT, STUDENT_ZONE, DemoError
from syncd.demo.dav_server import SESSIONS_CALENDAR, DavAccount
from syncd.demo.seed import DemoMentor, Interval, SeedEvent, next_offset_change, occurrences
from syncd.demo.state import DemoState

# 240 days of horizon keep the next DST change of Madrid (at most ~217 days away) in view.
ACADEMY = [
    ["mentor", "add", "ana", "--name", "Ana Ruiz", "--email", "ana@example.org", "--timezone", "Europe/Madrid"],
    ["mentor", "hours", "ana", "mon-fri 09:00-13:00", "mon-thu 16:00-19:00"],
    ["mentor", "add", "ben", "--name", "Ben Okafor", "--email", "ben@example.org", "--timezone", "America/New_York"],
    ["mentor", "hours", "ben", "mon-fri 08:00-12:00", "sat 10:00-12:00"],
    ["service", "add", SERVICE, "--name", "1-on-1 mentoring", "--duration", "45",
     "--buffer-after", "15", "--min-notice", "240", "--horizon-days", "240", "--step", "30"],
    ["service", "assign", SERVICE, "ana", "ben"],
    ["student", "add", STUDENT, "--name", "Priya Shah", "--email", "priya@example.org", "--timezone", STUDENT_ZONE],
]  # fmt: skip
QUOTA = ["quota", "grant", STUDENT, SERVICE, "--sessions", "4", "--renew", "monthly"]
RUNNER = CliRunner()


# -- the CLI ----------------------------------------------------------------------------------


def syncd(*argv: str, show: bool = True) -> str:
    """Run one `syncd` command in-process; its stdout, echoed unless `show` is false."""
    result = RUNNER.invoke(cli, list(argv))
    if result.exit_code != 0:
        detail = result.output.strip() or repr(result.exception)
        raise DemoError(f"syncd {shlex.join(argv)} failed: {detail}")
    if show:
        echo_command(argv, result.stdout)
    return result.stdout


def echo_command(argv: Sequence[str], output: str) -> None:
    click.echo(f"$ syncd {shlex.join(argv)}")
    for line in output.strip().splitlines():
        click.echo(f"  {line}")


def add_unless_present(argv: Sequence[str]) -> None:
    result = RUNNER.invoke(cli, list(argv))
    if result.exit_code == 0:
        echo_command(argv, result.stdout)
    elif "already exists" not in result.output:
        raise DemoError(f"syncd {shlex.join(argv)} failed: {result.output.strip()}")


def seed_academy() -> None:
    for argv in ACADEMY:
        add_unless_present(argv)
    granted = json.loads(syncd("quota", "show", STUDENT, "--json", show=False))
    if not any(row["service"] == SERVICE for row in granted):
        syncd(*QUOTA)
    syncd("quota", "show", STUDENT)


def remove_stale_calendars(dav_root: str) -> None:
    """Calendars of an earlier run whose Radicale listened on another port."""
    statuses = json.loads(syncd("calendar", "list", "--json", show=False))
    for status in statuses:
        local = str(status["remote_id"]).startswith(f"http://{HOST}:")
        if local and not str(status["remote_id"]).startswith(dav_root):
            syncd("calendar", "remove", str(status["id"]))


def connect_calendars(state: DemoState, accounts: Sequence[DavAccount]) -> None:
    remove_stale_calendars(accounts[0].root)
    for account in accounts:
        syncd("calendar", "add", account.username, "caldav", "--url", account.principal,
              "--username", account.username, "--password-file", str(state.password(account.username)),
              "--destination", account.calendar_url(SESSIONS_CALENDAR))  # fmt: skip


# -- slots ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    start: datetime
    end: datetime
    mentors: tuple[str, ...]


def student_slots(days: int, first: date | None = None, mentor: str | None = None) -> list[Slot]:
    argv = ["slots", SERVICE, "--tz", STUDENT_ZONE, "--days", str(days)]
    argv += ["--from", first.isoformat()] if first else []
    argv += ["--mentor", mentor] if mentor else []
    rows = json.loads(syncd(*argv, "--json", show=False))
    click.echo(f"$ syncd {shlex.join(argv)}   (condensed: start times in {STUDENT_ZONE})")
    found = [
        Slot(
            datetime.fromisoformat(r["start"]),
            datetime.fromisoformat(r["end"]),
            tuple(r["mentors"]),
        )
        for r in rows
    ]
    echo_condensed(found)
    return found


def echo_condensed(found: Sequence[Slot]) -> None:
    if not found:
        click.echo("  no slots")
    for day, day_slots in groupby(found, key=lambda s: s.start.date()):
        listed = list(day_slots)
        for n, mentor in enumerate(sorted({m for s in listed for m in s.mentors})):
            starts = " ".join(f"{s.start:%H:%M}" for s in listed if mentor in s.mentors)
            click.echo(f"  {f'{day:%a %d %b}' if n == 0 else '':10}  {mentor}: {starts}")


def check_busy_excluded(mentor: DemoMentor, found: Sequence[Slot], events: Sequence[SeedEvent],
                        first: date, days: int) -> None:  # fmt: skip
    """Say (and check) that no slot overlaps a blocking event while free events still have slots."""
    zone = ZoneInfo(mentor.zone)
    mine = [Interval(s.start, s.end) for s in found if mentor.id in s.mentors]
    busy = [i for e in events if not e.transparent for i in occurrences(e, zone, first, days)]
    free = [i for e in events if e.transparent for i in occurrences(e, zone, first, days)]
    clashes = sum(1 for slot in mine if any(slot.overlaps(b) for b in busy))
    inside_free = sum(1 for slot in mine if any(slot.overlaps(f) for f in free))
    click.echo(
        f"  {mentor.id}: {len(mine)} slots, {clashes} overlapping the seeded busy events; "
        f"{inside_free} inside the transparent 'Focus time'"
    )
    if clashes:
        raise DemoError(f"{clashes} slot(s) of {mentor.id} overlap seeded busy time")


def show_dst(mentor: DemoMentor, events: Sequence[SeedEvent], now: datetime) -> None:
    zone = ZoneInfo(mentor.zone)
    change = next_offset_change(zone, now)
    before = (change - timedelta(hours=1)).astimezone(zone).strftime("UTC%z")
    click.echo(
        f"\nNext DST change of {mentor.zone}: {change.astimezone(zone):%a %d %b %Y %H:%M} "
        f"({before} -> {change.astimezone(zone):UTC%z}); {STUDENT_ZONE} has none, so "
        f"{mentor.id}'s hours move by an hour for {STUDENT}:"
    )
    first = change.astimezone(zone).date() - timedelta(days=3)
    found = student_slots(6, first=first, mentor=mentor.id)
    check_busy_excluded(mentor, found, events, first - timedelta(days=1), 8)
