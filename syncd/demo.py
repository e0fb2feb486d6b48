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

import contextlib
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from email import message_from_bytes, policy
from itertools import groupby
from pathlib import Path
from types import FrameType
from typing import Any
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

import click
import httpx
import icalendar
from click.testing import CliRunner

from syncd.cli import cli
from syncd.identity import booking_uid
from syncd.secrets import generate_key

HOST = "127.0.0.1"
PREFERRED_DAEMON_PORT = 8470
STARTUP_SECONDS = 20.0  # bounded waits for Radicale and the daemon to answer
STOP_SECONDS = 15.0  # bounded waits for them to stop
RUN_ONCE_SECONDS = 60.0
HTTP_TIMEOUT = 10.0
STUDENT, STUDENT_ZONE, SERVICE = "priya", "Asia/Kolkata", "mentoring"
WORK_CALENDAR, SESSIONS_CALENDAR = "work", "sessions"  # collection names under each principal
CALENDAR_NAMES = {WORK_CALENDAR: "Work", SESSIONS_CALENDAR: "Mentoring sessions"}
RECURRING_SINCE = date(2026, 1, 1)  # the weekly meetings exist since then
FIXED_STAMP = datetime(2026, 1, 1, tzinfo=UTC)  # DTSTAMP: re-seeding writes identical objects
SLOT_DAYS = 7
DAY_CODES = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
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


class DemoError(click.ClickException):
    """A step failed; the message says which and why."""


# -- the state folder -------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoState:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "syncd.toml"

    @property
    def database(self) -> Path:
        return self.root / "syncd.db"

    @property
    def secret_key(self) -> Path:
        return self.root / "secret-key"

    @property
    def mail(self) -> Path:
        return self.root / "mail"

    @property
    def radicale(self) -> Path:
        return self.root / "radicale"

    def password(self, mentor_id: str) -> Path:
        return self.radicale / f"{mentor_id}.password"


def private_file(path: Path, make: Callable[[], str]) -> str:
    """The content of `path`, first created (mode 0600) from `make()` when missing."""
    if not path.exists():
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(make() + "\n")
    path.chmod(0o600)
    return path.read_text(encoding="utf-8").strip()


def prepare_state(state: DemoState) -> str:
    """Create the folders and private files; returns the secret key material."""
    state.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    state.radicale.mkdir(exist_ok=True)
    lines = [f"{m.id}:{private_file(state.password(m.id), secrets.token_urlsafe)}" for m in MENTORS]
    htpasswd = state.radicale / "htpasswd"
    htpasswd.write_text("\n".join(lines) + "\n", encoding="utf-8")
    htpasswd.chmod(0o600)
    return private_file(state.secret_key, generate_key)


def toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def write_config(state: DemoState, daemon_port: int) -> None:
    listen = f"{HOST}:{daemon_port}"
    state.config.write_text(
        "# Written by `make demo` on every run (ports may change).\n"
        f"[database]\nurl = {toml_string(f'sqlite:///{state.database}')}\n\n"
        f"[http]\nlisten = {toml_string(listen)}\n"
        f"public_url = {toml_string(f'http://{listen}')}\n"
        "allow_private_caldav = true  # the demo's Radicale is on 127.0.0.1\n\n"
        f"[invites]\nmail_dir = {toml_string(str(state.mail))}\n\n"
        f"[security]\nsecret_key_file = {toml_string(str(state.secret_key))}\n\n"
        "[sync]\ninterval_seconds = 60\n\n[daemon]\nsync_check_seconds = 10\n",
        encoding="utf-8",
    )


def point_environment_at(state: DemoState, key: str) -> None:
    """The in-process CLI and the daemon read the demo's config and key from here."""
    os.environ["SYNCD_CONFIG"] = str(state.config)
    os.environ["SYNCD_SECRET_KEY"] = key
    os.environ.pop("SYNCD_DATABASE_URL", None)


# -- ports ------------------------------------------------------------------------------------


def port_is_free(port: int) -> bool:
    """Nobody listens on it (connections of an earlier run in TIME_WAIT don't count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def stable_port(saved: Path) -> int:
    """The port used last time if it is still free (the calendars' URLs stay valid)."""
    with contextlib.suppress(OSError, ValueError):
        port = int(saved.read_text(encoding="utf-8"))
        if port_is_free(port):
            return port
    port = free_port()
    saved.write_text(f"{port}\n", encoding="utf-8")
    return port


def daemon_port() -> int:
    return PREFERRED_DAEMON_PORT if port_is_free(PREFERRED_DAEMON_PORT) else free_port()


def wait_until(ready: Callable[[], bool], what: str, timeout: float = STARTUP_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise DemoError(f"{what} did not answer within {timeout:.0f} s")
        time.sleep(0.1)


def answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=1.0)
    except httpx.TransportError:
        return False
    return True


# -- the mentors' calendars -------------------------------------------------------------------


@dataclass(frozen=True)
class DemoMentor:
    id: str
    zone: str
    meeting_days: tuple[int, ...]  # weekdays (Monday = 0) of the weekly meeting
    meeting: tuple[clock, clock]
    focus_days: tuple[int, ...]  # weekdays on which the free "focus time" block may fall
    focus: tuple[clock, clock]


MENTORS = (
    DemoMentor("ana", "Europe/Madrid", (0, 2), (clock(10), clock(11)), (1, 3), (clock(16), clock(18))),
    DemoMentor("ben", "America/New_York", (1, 3), (clock(9), clock(10)), (0, 2, 4), (clock(10), clock(12))),
)  # fmt: skip
BOOKED_MENTOR = MENTORS[0]


@dataclass(frozen=True)
class SeedEvent:
    key: str
    summary: str
    start: datetime | date  # a date: an all-day event
    end: datetime | date
    weekly: tuple[int, ...] = ()
    transparent: bool = False


@dataclass(frozen=True)
class Interval:
    start: datetime
    end: datetime

    def overlaps(self, other: Interval) -> bool:
        return self.start < other.end and other.start < self.end


def next_date(first: date, weekdays: Sequence[int], skip: date | None = None) -> date:
    """The first date from `first` on one of `weekdays`, other than `skip`."""
    return next(
        day
        for day in (first + timedelta(days=n) for n in range(15))
        if day.weekday() in weekdays and day != skip
    )


def next_offset_change(zone: ZoneInfo, now: datetime) -> datetime:
    """The first whole UTC hour after `now` at which `zone`'s offset differs (a DST change)."""
    hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    offset = hour.astimezone(zone).utcoffset()
    for step in range(1, 24 * 400):
        candidate = hour + timedelta(hours=step)
        if candidate.astimezone(zone).utcoffset() != offset:
            return candidate
    raise DemoError(f"{zone.key} has no DST change within 400 days")


def seed_events(mentor: DemoMentor, now: datetime) -> list[SeedEvent]:
    zone = ZoneInfo(mentor.zone)

    def at(day: date, hour: clock) -> datetime:
        return datetime.combine(day, hour, tzinfo=zone)

    today = now.astimezone(zone).date()
    focus_day = next_date(today + timedelta(days=1), mentor.focus_days)
    all_day = next_date(today + timedelta(days=2), range(5), skip=focus_day)
    change = next_offset_change(zone, now).astimezone(zone).date()
    meeting_day = next_date(RECURRING_SINCE, mentor.meeting_days)
    return [
        SeedEvent("weekly", "Team meeting", at(meeting_day, mentor.meeting[0]),
                  at(meeting_day, mentor.meeting[1]), weekly=mentor.meeting_days),
        SeedEvent("all-day", "Conference (all day)", all_day, all_day + timedelta(days=1)),
        SeedEvent("focus", "Focus time (free)", at(focus_day, mentor.focus[0]),
                  at(focus_day, mentor.focus[1]), transparent=True),
        SeedEvent("dst", "Offsite across the DST change", at(change - timedelta(days=2), clock(12)),
                  at(change + timedelta(days=1), clock(11))),
    ]  # fmt: skip


def to_ical(event: SeedEvent, uid: str) -> bytes:
    vevent = icalendar.Event()
    vevent.add("uid", uid)
    vevent.add("dtstamp", FIXED_STAMP)
    vevent.add("summary", event.summary)
    vevent.add("dtstart", event.start)
    vevent.add("dtend", event.end)
    vevent.add("transp", "TRANSPARENT" if event.transparent else "OPAQUE")
    if event.weekly:
        vevent.add("rrule", {"FREQ": "WEEKLY", "BYDAY": [DAY_CODES[d] for d in event.weekly]})
    calendar = icalendar.Calendar()
    calendar.add("prodid", "-//syncd//demo//EN")
    calendar.add("version", "2.0")
    calendar.add_component(vevent)
    calendar.add_missing_timezones()
    return bytes(calendar.to_ical())


def occurrences(event: SeedEvent, zone: ZoneInfo, first: date, days: int) -> Iterator[Interval]:
    """The event's instances that touch the local dates first .. first + days (inclusive)."""
    if isinstance(event.start, datetime) and isinstance(event.end, datetime):
        dates = (first + timedelta(days=n) for n in range(days + 1))
        for day in (d for d in dates if d.weekday() in event.weekly):
            start, end = event.start.timetz(), event.end.timetz()
            yield Interval(datetime.combine(day, start), datetime.combine(day, end))
        if not event.weekly:
            yield Interval(event.start, event.end)
        return
    midnight = clock(0, tzinfo=zone)
    yield Interval(datetime.combine(event.start, midnight), datetime.combine(event.end, midnight))


# -- embedded Radicale ------------------------------------------------------------------------


@dataclass(frozen=True)
class DavAccount:
    root: str  # the server's URL, ends with "/"
    username: str
    password: str

    @property
    def principal(self) -> str:
        return f"{self.root}{self.username}/"

    def calendar_url(self, name: str) -> str:
        return f"{self.principal}{name}/"

    def client(self) -> httpx.Client:
        return httpx.Client(auth=(self.username, self.password), timeout=HTTP_TIMEOUT)


def radicale_settings(state: DemoState, port: int) -> dict[str, dict[str, Any]]:
    return {
        "server": {"hosts": f"{HOST}:{port}"},
        "storage": {"filesystem_folder": str(state.radicale / "collections")},
        "auth": {
            "type": "htpasswd",
            "htpasswd_filename": str(state.radicale / "htpasswd"),
            "htpasswd_encryption": "plain",
            "delay": "0",
        },
        "logging": {"level": "warning"},
    }


@contextlib.contextmanager
def embedded_radicale(state: DemoState) -> Iterator[str]:
    """Radicale in a thread on 127.0.0.1; yields its URL and stops it on the way out."""
    try:
        import radicale.config
        import radicale.server
    except ImportError:
        raise DemoError(
            "Radicale is not installed: `pip install radicale` (make demo does)"
        ) from None
    port = stable_port(state.radicale / "port")
    configuration = radicale.config.load()
    configuration.update(radicale_settings(state, port), "syncd demo")
    ours, theirs = socket.socketpair()
    server = threading.Thread(
        target=radicale.server.serve, args=(configuration, theirs), name="radicale", daemon=True
    )
    server.start()
    root = f"http://{HOST}:{port}/"
    try:
        wait_until(lambda: not server.is_alive() or answers(root), f"Radicale at {root}")
        if not server.is_alive():
            raise DemoError(f"Radicale could not start on {root}")
        yield root
    finally:
        ours.close()
        server.join(STOP_SECONDS)
        theirs.close()


def mkcalendar_body(display_name: str) -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:set><D:prop>'
        f"<D:displayname>{escape(display_name)}</D:displayname>"
        '<C:supported-calendar-component-set><C:comp name="VEVENT"/>'
        "</C:supported-calendar-component-set></D:prop></D:set></C:mkcalendar>"
    )


def ensure_calendar(client: httpx.Client, url: str, display_name: str) -> None:
    if client.request("PROPFIND", url, headers={"Depth": "0"}).status_code == 207:
        return
    response = client.request(
        "MKCALENDAR", url, content=mkcalendar_body(display_name),
        headers={"Content-Type": "application/xml; charset=utf-8"},
    )  # fmt: skip
    if response.status_code != 201:
        raise DemoError(f"MKCALENDAR {url}: HTTP {response.status_code}")


def put_event(client: httpx.Client, calendar_url: str, event: SeedEvent, owner: str) -> None:
    url = f"{calendar_url}demo-{event.key}.ics"
    body = to_ical(event, f"demo-{event.key}-{owner}@syncd.invalid")
    response = client.put(url, content=body, headers={"Content-Type": "text/calendar"})
    if response.status_code not in (201, 204):
        raise DemoError(f"PUT {url}: HTTP {response.status_code}")


def seed_calendars(account: DavAccount, events: Sequence[SeedEvent]) -> None:
    """Both calendars exist and the work calendar holds exactly the seeded events."""
    with account.client() as client:
        client.request("PROPFIND", account.principal, headers={"Depth": "0"})  # creates it
        for name, display_name in CALENDAR_NAMES.items():
            ensure_calendar(client, account.calendar_url(name), display_name)
        for event in events:
            put_event(client, account.calendar_url(WORK_CALENDAR), event, account.username)


def describe_event(event: SeedEvent, zone: ZoneInfo) -> str:
    if not isinstance(event.start, datetime) or not isinstance(event.end, datetime):
        return f"{event.summary}: {event.start:%a %d %b}, all day ({zone.key})"
    if event.weekly:
        days = ",".join(DAY_CODES[d] for d in event.weekly)
        return f"{event.summary}: every {days} {event.start:%H:%M}-{event.end:%H:%M} ({zone.key})"
    free = ", transparent: does not block" if event.transparent else ""
    span = f"{event.start:%a %d %b %H:%M} - {event.end:%a %d %b %H:%M}"
    return f"{event.summary}: {span} ({zone.key}){free}"


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


# -- booking, outbox, results -----------------------------------------------------------------


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


def syncd_command(*argv: str) -> list[str]:
    script = Path(sys.executable).with_name("syncd")
    if script.is_file():
        return [str(script), *argv]
    return [sys.executable, "-c", "from syncd.cli import main; main()", *argv]


def run_once() -> None:
    click.echo("$ syncd run --once")
    try:
        done = subprocess.run(
            syncd_command("run", "--once"), capture_output=True, text=True,
            timeout=RUN_ONCE_SECONDS, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise DemoError(f"syncd run --once took more than {RUN_ONCE_SECONDS:.0f} s") from None
    if done.returncode != 0:
        raise DemoError(f"syncd run --once failed:\n{done.stderr.strip()}")
    click.echo("  every job ran once: calendars pulled, outbox drained")


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


# -- the daemon -------------------------------------------------------------------------------


def raise_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def serve_forever(port: int) -> None:
    """`syncd run` in the foreground until Ctrl-C (or SIGTERM); always stopped on the way out."""
    click.echo(f"\n$ syncd run   (listening on http://{HOST}:{port}; Ctrl-C to stop)")
    daemon = subprocess.Popen(syncd_command("run"))
    try:
        wait_until(
            lambda: daemon.poll() is not None or answers(f"http://{HOST}:{port}/healthz"),
            "the daemon",
        )
        if daemon.poll() is not None:
            raise DemoError(f"syncd run exited with status {daemon.returncode}")
        click.echo(
            "Ready: open the links above. It keeps pulling the demo Radicale. Ctrl-C to stop."
        )
        if daemon.wait() != 0:
            raise DemoError(f"syncd run exited with status {daemon.returncode}")
    except KeyboardInterrupt:
        click.echo("\nstopping…")
    finally:
        stop_process(daemon)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_SECONDS)


# -- the whole demo ---------------------------------------------------------------------------


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


if __name__ == "__main__":
    main()
