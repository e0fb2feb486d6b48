"""Real CalDAV servers (Radicale, Xandikos) run in-process on 127.0.0.1 for tests.

Each helper is a context manager yielding a `DavServer`; it picks a free port, uses a temporary
storage directory, waits (bounded) until the server answers and shuts it down on exit:

    with radicale_server() as server:
        calendar_url = make_calendar(server, "work", timezone="Europe/Berlin")
        connector = CalDAVConnector(server.principal_url)

`radicale_server(auth=("user", "secret"))` enables htpasswd basic auth for that account.
`silent_server()` accepts connections and never answers (timeout tests); `refused_url()` is a
URL on which nothing listens (connection-refused tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import httpx

HOST = "127.0.0.1"
STARTUP_TIMEOUT = 15.0
SHUTDOWN_TIMEOUT = 10.0


@dataclass(frozen=True)
class DavServer:
    kind: str  # "radicale" or "xandikos"
    url: str  # server root, ends with "/"
    principal_url: str  # the test user's principal, ends with "/"
    calendar_home_url: str  # where make_calendar creates collections
    storage_dir: Path
    auth: tuple[str, str] | None = None  # (username, password) clients must send, if any

    def client(self, timeout: float = 10.0) -> httpx.Client:
        """A plain HTTP client for seeding and inspecting the server directly."""
        return httpx.Client(auth=self.auth, timeout=timeout)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def refused_url() -> str:
    """A URL on a port nobody listens on (the port was free a moment ago)."""
    return f"http://{HOST}:{free_port()}/"


def wait_until_answering(url: str, timeout: float = STARTUP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.request("OPTIONS", url, timeout=1.0)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"server at {url} did not answer within {timeout}s") from None
            time.sleep(0.05)


# --------------------------------------------------------------------- Radicale


@contextlib.contextmanager
def radicale_server(
    auth: tuple[str, str] | None = None, username: str = "user1"
) -> Iterator[DavServer]:
    import radicale.config
    import radicale.server

    # With auth "none" Radicale still asks anonymous clients to log in (its owner_only rights
    # need a user name) and then accepts any password: clients always send `credentials`.
    credentials = auth or (username, "any-password")
    user = credentials[0]
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="syncd-radicale-") as storage:
        configuration = radicale.config.load()
        configuration.update(_radicale_settings(port, Path(storage), auth), "syncd tests")
        shutdown_ours, shutdown_theirs = socket.socketpair()
        thread = threading.Thread(
            target=radicale.server.serve,
            args=(configuration, shutdown_theirs),
            name=f"radicale-{port}",
            daemon=True,
        )
        thread.start()
        root = f"http://{HOST}:{port}/"
        try:
            wait_until_answering(root)
            principal = f"{root}{user}/"
            # Radicale creates a principal collection on first authenticated access;
            # without auth it has to be made explicitly before MKCALENDAR below it.
            httpx.request("MKCOL", principal, auth=credentials, timeout=5.0)
            yield DavServer("radicale", root, principal, principal, Path(storage), credentials)
        finally:
            shutdown_ours.close()
            thread.join(SHUTDOWN_TIMEOUT)
            shutdown_theirs.close()


def _radicale_settings(
    port: int, storage: Path, auth: tuple[str, str] | None
) -> dict[str, dict[str, Any]]:
    settings: dict[str, dict[str, Any]] = {
        "server": {"hosts": f"{HOST}:{port}"},
        "storage": {"filesystem_folder": str(storage / "collections")},
        "auth": {"type": "none", "delay": "0"},  # delay: Radicale slows every 401 by 1 s
        "logging": {"level": "warning"},
    }
    if auth is not None:
        htpasswd = storage / "htpasswd"
        htpasswd.write_text(f"{auth[0]}:{auth[1]}\n", encoding="utf-8")
        settings["auth"] = {
            "type": "htpasswd",
            "htpasswd_filename": str(htpasswd),
            "htpasswd_encryption": "plain",
            "delay": "0",
        }
    return settings


# --------------------------------------------------------------------- Xandikos


@contextlib.contextmanager
def xandikos_server(username: str = "user1") -> Iterator[DavServer]:
    from aiohttp import web
    from xandikos.web import SingleUserFilesystemBackend, XandikosApp

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="syncd-xandikos-") as storage:
        principal_path = f"/{username}/"
        backend: Any = SingleUserFilesystemBackend(storage)
        backend._mark_as_principal(principal_path)
        backend.create_principal(principal_path, create_defaults=True)
        dav_app: Any = XandikosApp(backend, current_user_principal=principal_path, strict=True)

        async def handler(request: web.Request) -> web.StreamResponse:
            response: web.StreamResponse = await dav_app.aiohttp_handler(request, "/")
            return response

        app = web.Application()
        app.router.add_route("*", "/{path_info:.*}", handler)
        loop = asyncio.new_event_loop()
        runner = web.AppRunner(app)
        thread = threading.Thread(
            target=_run_aiohttp, args=(loop, runner, port), name=f"xandikos-{port}", daemon=True
        )
        thread.start()
        root = f"http://{HOST}:{port}/"
        try:
            wait_until_answering(root)
            principal = f"{root}{username}/"
            yield DavServer("xandikos", root, principal, f"{principal}calendars/", Path(storage))
        finally:
            _stop_aiohttp(loop, runner, thread)


def _run_aiohttp(loop: asyncio.AbstractEventLoop, runner: Any, port: int) -> None:
    from aiohttp import web

    asyncio.set_event_loop(loop)

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, HOST, port).start()

    loop.run_until_complete(start())
    loop.run_forever()
    loop.close()


def _stop_aiohttp(loop: asyncio.AbstractEventLoop, runner: Any, thread: threading.Thread) -> None:
    with contextlib.suppress(Exception):  # best effort: the storage dir is thrown away anyway
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(SHUTDOWN_TIMEOUT)
    # Stopping from outside the loop, after cleanup finished, lets run_forever return.
    loop.call_soon_threadsafe(loop.stop)
    thread.join(SHUTDOWN_TIMEOUT)


# ------------------------------------------------------------------ misbehaving


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """A TCP server that accepts connections and never answers: requests time out."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((HOST, 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    try:
        yield f"http://{HOST}:{port}/"
    finally:
        listener.close()


# ---------------------------------------------------------------------- seeding


def make_calendar(server: DavServer, name: str, timezone: str | None = None) -> str:
    """MKCALENDAR `name` under the user's calendar home; returns its URL (ending in "/")."""
    url = f"{server.calendar_home_url}{name}/"
    body = _mkcalendar_body(name, timezone)
    with server.client() as client:
        response = client.request(
            "MKCALENDAR", url, content=body, headers={"Content-Type": "application/xml"}
        )
    if response.status_code != 201:
        raise RuntimeError(f"MKCALENDAR {url}: HTTP {response.status_code} {response.text}")
    return url


def put_object(server: DavServer, url: str, ics: str) -> str | None:
    """PUT raw iCalendar data (valid or not) straight to the server; returns the ETag."""
    with server.client() as client:
        response = client.put(url, content=ics, headers={"Content-Type": "text/calendar"})
    if response.status_code not in (201, 204):
        raise RuntimeError(f"PUT {url}: HTTP {response.status_code} {response.text}")
    etag = response.headers.get("ETag")
    return str(etag) if etag is not None else None


def delete_object(server: DavServer, url: str) -> None:
    with server.client() as client:
        response = client.delete(url)
    if response.status_code not in (200, 204):
        raise RuntimeError(f"DELETE {url}: HTTP {response.status_code}")


def _mkcalendar_body(name: str, timezone: str | None) -> str:
    timezone_xml = ""
    if timezone:
        vtimezone = (
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//syncd tests//EN\r\n"
            f"BEGIN:VTIMEZONE\r\nTZID:{timezone}\r\nBEGIN:STANDARD\r\n"
            "DTSTART:19700101T000000\r\nTZOFFSETFROM:+0000\r\nTZOFFSETTO:+0000\r\n"
            "END:STANDARD\r\nEND:VTIMEZONE\r\nEND:VCALENDAR\r\n"
        )
        timezone_xml = f"<C:calendar-timezone>{escape(vtimezone)}</C:calendar-timezone>"
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
        f"<D:set><D:prop><D:displayname>{escape(name)}</D:displayname>{timezone_xml}"
        "</D:prop></D:set></C:mkcalendar>"
    )
