"""The embedded Radicale server and the seeding of the mentors' calendars over WebDAV."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

import httpx

from syncd.demo.common import HOST, HTTP_TIMEOUT, STOP_SECONDS, DemoError
from syncd.demo.ports import answers, stable_port, wait_until
from syncd.demo.seed import SeedEvent, to_ical
from syncd.demo.state import DemoState

WORK_CALENDAR, SESSIONS_CALENDAR = "work", "sessions"  # collection names under each principal
CALENDAR_NAMES = {WORK_CALENDAR: "Work", SESSIONS_CALENDAR: "Mentoring sessions"}


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
