"""Helpers for end-to-end tests of `syncd run` as real processes (tests/test_e2e_daemon.py).

- `TcpProxy`: a TCP forwarder on 127.0.0.1 in front of a calendar server. It can go down
  (nothing listens on its port: connections are refused), come back on the same port, and
  hold requests of one method until released (to kill a daemon while it waits on them).
- `SyncdProcesses`: starts `syncd ... run` processes with their stderr (JSON log lines) in
  files, and kills whatever is still running at teardown.
- `syncd_cli(...)`: one admin command as a subprocess, with a timeout.
- `seed_world(...)`: a mentor, a service, a student and an unlimited grant, written directly.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import icalendar

from tests.servers import DavServer

HOST = "127.0.0.1"
SECRET_KEY = "e2e-daemon-tests-" + "k" * 40
SYNCD = [sys.executable, "-c", "from syncd.cli import main; main()"]
CLI_TIMEOUT = 60.0
START_TIMEOUT = 30.0
HOLD_TIMEOUT = 30.0
_CHUNK = 65536


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `condition` every 50 ms; AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


# -- a proxy that can fail ----------------------------------------------------------------------


@dataclass(eq=False)  # hashed by identity: kept in a set
class _Link:
    client: socket.socket
    upstream: socket.socket
    open_directions: int = 2

    def close(self) -> None:
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class TcpProxy:
    """Forwards 127.0.0.1:`port` to 127.0.0.1:`target_port`, one thread per direction."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.held = threading.Event()  # set when a request is being held
        self._hold: bytes | None = None
        self._release = threading.Event()
        self._links: set[_Link] = set()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    def translate(self, server_url: str) -> str:
        """The same resource, reached through the proxy."""
        return self.url + server_url.split("/", 3)[3]

    def up(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        """Stop listening and cut every open connection: clients get "connection refused"."""
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            links, self._links = set(self._links), set()
        for link in links:
            link.close()

    def hold(self, method: str) -> None:
        """Hold every authenticated request of `method` (e.g. "PUT") until `release()`.
        (The CalDAV client sends each request without credentials first; that one only
        gets a 401 and is let through.)"""
        self._release.clear()
        self.held.clear()
        self._hold = f"{method} ".encode()

    def release(self) -> None:
        """Forward the held requests, and hold no more."""
        self._hold = None
        self._release.set()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by down()
            try:
                upstream = socket.create_connection((HOST, self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            link = _Link(client, upstream)
            with self._lock:
                self._links.add(link)
            threading.Thread(target=self._pump, args=(link, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(link, False), daemon=True).start()

    def _pump(self, link: _Link, to_server: bool) -> None:
        source, sink = (link.client, link.upstream) if to_server else (link.upstream, link.client)
        try:
            while chunk := source.recv(_CHUNK):
                if to_server:
                    self._before_forwarding(chunk)
                sink.sendall(chunk)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
        self._finished(link)

    def _finished(self, link: _Link) -> None:
        """One direction is done; the second one closes both sockets."""
        with self._lock:
            link.open_directions -= 1
            last = link.open_directions == 0
            if last:
                self._links.discard(link)
        if last:
            link.close()

    def _before_forwarding(self, chunk: bytes) -> None:
        hold = self._hold
        if hold is not None and chunk.startswith(hold) and b"\r\nauthorization:" in chunk.lower():
            self.held.set()
            self._release.wait(HOLD_TIMEOUT)


@contextlib.contextmanager
def proxy_for(server: DavServer) -> Iterator[TcpProxy]:
    target_port = int(server.url.rstrip("/").rsplit(":", 1)[1])
    proxy = TcpProxy(target_port)
    proxy.up()
    try:
        yield proxy
    finally:
        proxy.release()
        proxy.down()


# -- syncd processes ----------------------------------------------------------------------------


def syncd_env() -> dict[str, str]:
    hidden = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "SYNCD_CONFIG", "SYNCD_DATABASE_URL")
    env = {name: value for name, value in os.environ.items() if name not in hidden}
    env["SYNCD_SECRET_KEY"] = SECRET_KEY
    return env


def syncd_cli(config: Path, database_url: str, *args: str) -> str:
    """Run `syncd --config ... --database ... ARGS`; its stdout, or AssertionError."""
    command = [*SYNCD, "--config", str(config), "--database", database_url, *args]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=CLI_TIMEOUT, env=syncd_env()
    )
    assert result.returncode == 0, f"syncd {' '.join(args)} failed: {result.stderr}"
    return result.stdout


@dataclass
class DaemonProcess:
    process: subprocess.Popen[bytes]
    log_path: Path

    def records(self) -> list[dict[str, Any]]:
        lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def messages(self) -> list[str]:
        return [str(record.get("message")) for record in self.records()]

    def owner(self) -> str | None:
        for message in self.messages():
            if message.startswith("syncd running as "):
                return message.split()[3]
        return None

    def started_or_exited(self) -> bool:
        return self.owner() is not None or self.process.poll() is not None

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, leases stay as they were."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(15)


@dataclass
class SyncdProcesses:
    directory: Path
    started: list[DaemonProcess] = field(default_factory=list)

    def start(self, config: Path, database_url: str, count: int = 1) -> list[DaemonProcess]:
        """`count` x `syncd run`, returned once each logged that it runs (and its owner id)."""
        daemons = [self._launch(config, database_url) for _ in range(count)]
        for daemon in daemons:
            wait_until(daemon.started_or_exited, START_TIMEOUT, "the daemon to start")
            assert daemon.process.poll() is None, daemon.log_path.read_text()
        return daemons

    def _launch(self, config: Path, database_url: str) -> DaemonProcess:
        log_path = self.directory / f"daemon-{len(self.started)}.log"
        command = [*SYNCD, "--config", str(config), "--database", database_url, "run"]
        with log_path.open("wb") as stderr:
            process = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=stderr, env=syncd_env()
            )
        daemon = DaemonProcess(process, log_path)
        self.started.append(daemon)
        return daemon

    def cleanup(self) -> None:
        for daemon in self.started:
            if daemon.process.poll() is None:
                daemon.process.kill()
            daemon.process.wait(10)


# -- configuration and data ---------------------------------------------------------------------


def write_config(path: Path, sections: Mapping[str, Mapping[str, object]]) -> Path:
    """A TOML file from {section: {key: value}} (str, bool, int and float values)."""
    lines: list[str] = []
    for section, options in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {_toml(value)}" for key, value in options.items())
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))


def seed_world(database_url: str, *, horizon_days: int = 3) -> None:
    """Mentor ana (UTC, available around the clock), 60-minute service `intro` on the hour,
    student stu (Europe/Madrid) with unlimited sessions."""
    from syncd import directory, quotas
    from syncd.store.db import Database

    db = Database(database_url)
    try:
        db.upgrade()
        with db.write_session() as session:
            directory.add_mentor(
                session, "ana", name="Ana", email="ana@example.org", timezone="UTC"
            )
            directory.set_weekly_hours(session, "ana", ["daily 00:00-24:00"])
            service = directory.add_service(
                session, "intro", name="Intro call", duration=60, step=60,
                horizon_days=horizon_days,
            )  # fmt: skip
            directory.assign_service(session, "intro", ["ana"])
            student = directory.add_student(
                session, "stu", name="Stu", email="stu@example.org", timezone="Europe/Madrid"
            )
            session.flush()
            quotas.grant(
                session, student, service=service, sessions=None, today=datetime.now(UTC).date()
            )
    finally:
        db.dispose()


def timed_event(uid: str, day: date, hour: int) -> str:
    stamp = f"{day:%Y%m%d}T{hour:02d}0000Z"
    end = f"{day:%Y%m%d}T{hour + 1:02d}0000Z"
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//syncd e2e//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:20270101T000000Z\r\nDTSTART:{stamp}\r\nDTEND:{end}\r\n"
        "SUMMARY:busy\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )


_QUERY = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
    "<D:prop><C:calendar-data/></D:prop>"
    '<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT"/>'
    "</C:comp-filter></C:filter></C:calendar-query>"
)


def calendar_events(server: DavServer, calendar_url: str) -> list[icalendar.cal.Component]:
    """Every VEVENT stored in the collection, asked of the server directly."""
    from xml.etree import ElementTree

    with server.client() as client:
        response = client.request(
            "REPORT",
            calendar_url,
            content=_QUERY,
            headers={"Depth": "1", "Content-Type": "application/xml"},
        )
    assert response.status_code == 207, response.text
    tag = "{urn:ietf:params:xml:ns:caldav}calendar-data"
    events: list[icalendar.cal.Component] = []
    for data in ElementTree.fromstring(response.content).iter(tag):
        calendar = icalendar.Calendar.from_ical(data.text or "")
        events.extend(calendar.walk("VEVENT"))
    return events


def answers(url: str) -> bool:
    try:
        httpx.request("OPTIONS", url, timeout=1.0)
    except httpx.TransportError:
        return False
    return True
