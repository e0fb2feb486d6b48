"""Benchmark: syncd's CalDAV pull against vdirsyncer's sync, same calendar, same run.

Run by hand (not in CI), from the project root:

    .venv/bin/pip install vdirsyncer        # bench only; not a syncd dependency
    .venv/bin/python -m bench.sync_caldav [--sizes 2000,5000] [--changes 7]

For each size: one in-process Radicale (tests.servers) with a fresh storage folder, a calendar of
N events (10 % weekly recurring, the rest single events within +-180 days of now) written
straight into Radicale's multifilesystem collection folder (one .ics file per item next to the
`.Radicale.props` that MKCALENDAR created; Radicale's item cache is keyed by a hash of the file
content and is dropped anyway), then one PROPFIND that makes Radicale parse and cache every
item, so neither client pays for the server's cold cache.

Both clients talk to Radicale through one counting HTTP proxy on 127.0.0.1, which counts every
HTTP request (auth retries included). Three phases, syncd then vdirsyncer in each:
- full: the first pull of the whole calendar;
- incremental: after `--changes` edits made directly on the server (modify, add, delete);
- no-change: again, with nothing changed.

syncd = the real `syncd.sync.sync_calendar` (CalDAVConnector.pull with sync-collection and
calendar-multiget, then parsing, recurrence expansion within the rolling window and the busy
rows written to a SQLite database). vdirsyncer = `vdirsyncer sync` run in-process through its
click entry point (no interpreter start-up counted), a pair of the CalDAV calendar (read-only)
and a local filesystem storage; `vdirsyncer discover` runs once beforehand, untimed.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import importlib
import platform
import random
import shutil
import socket
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from connectors.caldav import CalDAVConnector
from syncd import directory
from syncd.busy import busy_from_ical
from syncd.store.db import Database
from syncd.store.models import Calendar, CalendarAccount
from syncd.sync import sync_calendar, sync_window
from tests.servers import DavServer, delete_object, make_calendar, put_object, radicale_server

HOST = "127.0.0.1"
CALENDAR_NAME = "bench"
MENTOR = "ana"
HORIZON_DAYS = 60  # longer than the 14-day default: more expansion work for syncd
RECURRING_SHARE = 0.10
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length"}
)


# ----------------------------------------------------------------- counting proxy


class CountingProxy:
    """A reverse proxy to one upstream that counts requests per method (thread-safe)."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or HOST
        self.upstream_port = parts.port or 80
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((HOST, 0), _proxy_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._server.server_address[1]}/"

    def record(self, method: str) -> None:
        with self._lock:
            self.counts[method] += 1

    def take(self) -> Counter[str]:
        """The counts since the last call."""
        with self._lock:
            counts, self.counts = self.counts, Counter()
            return counts

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _proxy_handler(proxy: CountingProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # Without it, Nagle + delayed ACK add ~40 ms to keep-alive round trips.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.upstream = http.client.HTTPConnection(
                proxy.upstream_host, proxy.upstream_port, timeout=60
            )

        def finish(self) -> None:
            super().finish()
            self.upstream.close()

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _forward(self) -> None:
            proxy.record(self.command)
            body = self._read_body()
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            headers["Content-Length"] = str(len(body))
            self.upstream.request(self.command, self.path, body=body, headers=headers)
            response = self.upstream.getresponse()
            data = response.read()
            self.send_response(response.status, response.reason)
            for name, value in response.getheaders():
                if name.lower() not in _HOP_BY_HOP:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                return self._read_chunked()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _read_chunked(self) -> bytes:
            chunks = []
            for _ in range(1_000_000):  # bounded: a chunk stream ends with a 0-size chunk
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)

        do_GET = do_PUT = do_POST = do_DELETE = do_OPTIONS = do_HEAD = _forward
        do_PROPFIND = do_REPORT = do_PROPPATCH = do_MKCALENDAR = do_MKCOL = _forward

    return Handler


# ----------------------------------------------------------------- the calendar


def event_ics(index: int, now: datetime, rng: random.Random, *, edit: int = 0) -> str:
    """One event; every tenth is weekly recurring (half of them open-ended)."""
    start = (now + timedelta(days=rng.randint(-180, 180), hours=rng.randint(7, 18))).replace(
        minute=0, second=0, microsecond=0
    )
    end = start + timedelta(minutes=rng.choice((30, 45, 60, 90)))
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//syncd bench//EN",
        "BEGIN:VEVENT",
        f"UID:bench-{index:06d}@example.org",
        "DTSTAMP:20240101T000000Z",
        f"DTSTART:{start:%Y%m%dT%H%M%SZ}",
        f"DTEND:{end:%Y%m%dT%H%M%SZ}",
        f"SUMMARY:Event {index} (edit {edit})",
        f"SEQUENCE:{edit}",
    ]
    if index % round(1 / RECURRING_SHARE) == 0:
        lines.append("RRULE:FREQ=WEEKLY" + (";COUNT=52" if index % 20 == 0 else ""))
    lines += ["END:VEVENT", "END:VCALENDAR", ""]
    return "\r\n".join(lines)


def collection_folder(server: DavServer, calendar_url: str) -> Path:
    """Where Radicale's multifilesystem storage keeps this collection."""
    path = urlsplit(calendar_url).path.strip("/")
    return server.storage_dir / "collections" / "collection-root" / path


def seed_folder(server: DavServer, calendar_url: str, size: int, now: datetime) -> None:
    """Write `size` items as files into the collection folder and drop Radicale's caches."""
    folder = collection_folder(server, calendar_url)
    if not (folder / ".Radicale.props").is_file():
        raise RuntimeError(f"{folder} is not a Radicale collection")
    rng = random.Random(size)
    for index in range(size):
        (folder / f"ev-{index:06d}.ics").write_text(event_ics(index, now, rng), encoding="utf-8")
    shutil.rmtree(folder / ".Radicale.cache", ignore_errors=True)


_WARM_UP_REQUESTS = (
    # Parses and caches every item (what a PROPFIND for etags costs Radicale the first time).
    (
        "PROPFIND",
        "1",
        '<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:getetag/></D:prop>'
        "</D:propfind>",
    ),
    # Builds Radicale's sync history (one file per item) that the first sync-collection needs.
    (
        "REPORT",
        "0",
        '<?xml version="1.0"?><D:sync-collection xmlns:D="DAV:"><D:sync-token/>'
        "<D:sync-level>1</D:sync-level><D:prop><D:getetag/></D:prop></D:sync-collection>",
    ),
)


def warm_server_cache(server: DavServer, calendar_url: str) -> None:
    """Make Radicale do its one-off per-item work now, so no measured client pays for it."""
    with server.client(timeout=300) as client:
        for method, depth, body in _WARM_UP_REQUESTS:
            response = client.request(
                method,
                calendar_url,
                content=body,
                headers={"Depth": depth, "Content-Type": "application/xml"},
            )
            if response.status_code != 207:
                raise RuntimeError(f"{method} {calendar_url}: HTTP {response.status_code}")


def change_calendar(
    server: DavServer, calendar_url: str, size: int, changes: int, now: datetime, round_: int
) -> None:
    """`changes` edits behind both clients' backs: modifications, additions, one deletion."""
    rng = random.Random(1000 * round_ + size)
    modified = max(1, (changes - 1) // 2)
    added = changes - 1 - modified
    picks = rng.sample(range(1, size), modified + 1)
    for index in picks[:modified]:
        url = f"{calendar_url}ev-{index:06d}.ics"
        put_object(server, url, event_ics(index, now, rng, edit=round_))
    for offset in range(added):
        index = size + 100 * round_ + offset
        put_object(server, f"{calendar_url}ev-{index:06d}.ics", event_ics(index, now, rng))
    delete_object(server, f"{calendar_url}ev-{picks[-1]:06d}.ics")


# ----------------------------------------------------------------- the two clients


class SyncdClient:
    """The real sync engine on a SQLite database, pulling through the proxy."""

    def __init__(self, workdir: Path, calendar_url: str, server: DavServer) -> None:
        self.db = Database(f"sqlite:///{workdir / 'syncd.db'}")
        self.db.upgrade()
        user, password = server.auth or (None, None)
        self.connector = CalDAVConnector(calendar_url, user, password, timeout=300)
        self.calendar_id = _add_calendar(self.db, calendar_url)

    def sync(self) -> None:
        sync_calendar(
            self.db,
            self.calendar_id,
            self.connector,
            now=datetime.now(UTC),
            horizon_days=HORIZON_DAYS,
        )

    def close(self) -> None:
        self.connector.close()
        self.db.dispose()


def _add_calendar(db: Database, calendar_url: str) -> int:
    with db.write_session() as session:
        directory.add_mentor(
            session, MENTOR, name="Ana", email="ana@example.org", timezone="Europe/Madrid"
        )
        session.flush()  # the account's foreign key needs the mentor row first
        account = CalendarAccount(mentor_id=MENTOR, provider="caldav", url=calendar_url)
        session.add(account)
        session.flush()
        calendar = Calendar(
            mentor_id=MENTOR,
            account_id=account.id,
            provider="caldav",
            remote_id=calendar_url,
            name=CALENDAR_NAME,
        )
        session.add(calendar)
        session.flush()
        return int(calendar.id)


class PullExpandClient:
    """syncd without its database: CalDAVConnector.pull + syncd.busy.busy_from_ical."""

    def __init__(self, calendar_url: str, server: DavServer) -> None:
        user, password = server.auth or (None, None)
        self.calendar_url = calendar_url
        self.connector = CalDAVConnector(calendar_url, user, password, timeout=300)
        self.state: str | None = None
        self.occurrences = 0

    def sync(self) -> None:
        changes = self.connector.pull(self.calendar_url, self.state)
        window = sync_window(datetime.now(UTC), HORIZON_DAYS)
        zone = changes.calendar_timezone or "Europe/Madrid"
        for remote in changes.upserts:
            self.occurrences += len(
                busy_from_ical(
                    str(remote.data),
                    window_start=window.start,
                    window_end=window.end,
                    default_timezone=zone,
                )
            )
        self.state = changes.state

    def close(self) -> None:
        self.connector.close()


class VdirsyncerClient:
    """`vdirsyncer sync` of the calendar into a local folder, in-process."""

    def __init__(self, workdir: Path, calendar_url: str, server: DavServer) -> None:
        # A bench-only dependency without type information: imported late, typed Any.
        self._app: Any = importlib.import_module("vdirsyncer.cli").app
        user, password = server.auth or ("", "")
        self.local = workdir / "vdir"
        self.local.mkdir()
        self.config = workdir / "vdirsyncer.conf"
        self.config.write_text(
            f"""[general]
status_path = "{workdir / "status"}/"

[pair bench]
a = "bench_local"
b = "bench_remote"
collections = null

[storage bench_local]
type = "filesystem"
path = "{self.local}/"
fileext = ".ics"

[storage bench_remote]
type = "caldav"
url = "{calendar_url}"
username = "{user}"
password = "{password}"
read_only = true
""",
            encoding="utf-8",
        )

    def run(self, command: str) -> None:
        args = ["-c", str(self.config), "-v", "WARNING", command]
        try:
            self._app.main(args=args, prog_name="vdirsyncer", standalone_mode=False)
        except SystemExit as exit_:  # vdirsyncer exits non-zero when a sync failed
            if exit_.code:
                raise RuntimeError(f"vdirsyncer {command} exited with {exit_.code}") from None

    def sync(self) -> None:
        self.run("sync")

    def items(self) -> int:
        return sum(1 for _ in self.local.glob("*.ics"))


# ----------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Measure:
    seconds: float
    requests: int


def measure(proxy: CountingProxy, action: Callable[[], None]) -> Measure:
    proxy.take()
    started = time.perf_counter()
    action()
    elapsed = time.perf_counter() - started
    return Measure(elapsed, sum(proxy.take().values()))


CLIENTS = ("syncd", "pull+expand", "vdirsyncer")


@dataclass(frozen=True)
class PhaseResult:
    phase: str
    measures: dict[str, Measure]  # by client name, see CLIENTS

    def ratio(self, client: str) -> float:
        """The client's time / vdirsyncer's: below 1.0 the client is faster."""
        return self.measures[client].seconds / self.measures["vdirsyncer"].seconds


@contextlib.contextmanager
def seeded_radicale(size: int, now: datetime) -> Iterator[tuple[DavServer, str]]:
    with radicale_server() as server:
        calendar_url = make_calendar(server, CALENDAR_NAME, timezone="Europe/Madrid")
        started = time.perf_counter()
        seed_folder(server, calendar_url, size, now)
        warm_server_cache(server, calendar_url)
        print(f"  seeded {size} events and warmed Radicale in {time.perf_counter() - started:.1f}s")
        yield server, calendar_url


def run_size(size: int, changes: int) -> list[PhaseResult]:
    now = datetime.now(UTC)
    with (
        seeded_radicale(size, now) as (server, direct_url),
        CountingProxy(server.url) as proxy,
        tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp,
    ):
        workdir = Path(tmp)
        calendar_url = proxy.url.rstrip("/") + urlsplit(direct_url).path
        for name in ("syncd", "vdirsyncer"):
            (workdir / name).mkdir()
        ours = SyncdClient(workdir / "syncd", calendar_url, server)
        lean = PullExpandClient(calendar_url, server)
        theirs = VdirsyncerClient(workdir / "vdirsyncer", calendar_url, server)
        theirs.run("discover")
        clients: dict[str, Callable[[], None]] = {
            "syncd": ours.sync,
            "pull+expand": lean.sync,
            "vdirsyncer": theirs.sync,
        }
        try:
            results = [run_phase("full", proxy, clients)]
            if theirs.items() != size:
                raise RuntimeError(f"vdirsyncer stored {theirs.items()} of {size} items")
            change_calendar(server, direct_url, size, changes, now, round_=1)
            results.append(run_phase(f"incremental ({changes} changes)", proxy, clients))
            results.append(run_phase("no-change", proxy, clients))
        finally:
            ours.close()
            lean.close()
    return results


def run_phase(
    phase: str, proxy: CountingProxy, clients: dict[str, Callable[[], None]]
) -> PhaseResult:
    """Every client in turn against the same server state."""
    return PhaseResult(phase, {name: measure(proxy, sync) for name, sync in clients.items()})


def report(size: int, results: list[PhaseResult]) -> None:
    print(f"\n{size} events ({RECURRING_SHARE:.0%} weekly recurring)")
    columns = "".join(f"{name + ' s':>16}{'req':>5}" for name in CLIENTS)
    print(f"  {'phase':<26}{columns}{'ratio syncd':>13}{'ratio p+e':>11}")
    for result in results:
        cells = "".join(
            f"{result.measures[name].seconds:>16.3f}{result.measures[name].requests:>5}"
            for name in CLIENTS
        )
        ratios = f"{result.ratio('syncd'):>13.2f}{result.ratio('pull+expand'):>11.2f}"
        print(f"  {result.phase:<26}{cells}{ratios}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", default="2000,5000", help="comma-separated event counts")
    parser.add_argument("--changes", type=int, default=7, help="edits before the incremental pull")
    args = parser.parse_args(argv)
    if args.changes < 2:
        parser.error("--changes must be at least 2 (one modification and one deletion)")
    sizes = [int(size) for size in args.sizes.split(",")]
    print(
        f"syncd vs vdirsyncer on Radicale; Python {platform.python_version()}, {platform.machine()}"
    )
    print(
        "syncd = sync_calendar into SQLite; pull+expand = CalDAVConnector.pull + busy_from_ical;"
        "\nratio = time / vdirsyncer's time; requests counted by a proxy in front of Radicale"
    )
    for size in sizes:
        report(size, run_size(size, args.changes))


if __name__ == "__main__":
    main()
