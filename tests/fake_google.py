"""A local server faithful to Google Calendar API v3 documented behaviour (the subset syncd uses).

Run in a thread on 127.0.0.1 with a free port; drive it with the real google-api-python-client:

    with FakeGoogle() as google:
        google.add_calendar("mentor@example.com", time_zone="Europe/Berlin", primary=True)
        refresh = google.issue_refresh_token()
        ...build(..., client_options={"api_endpoint": google.api_endpoint})

Documented behaviour reproduced (https://developers.google.com/calendar/api/v3/reference and
guides/sync, guides/errors):
- events.list pages with pageToken/maxResults (default 250, capped at 2500); `nextSyncToken`
  only on the last page; `syncToken` returns everything changed since, deleted events included
  (as `status: cancelled`, with only id/status guaranteed); `syncToken` combined with timeMin,
  timeMax, updatedMin, q, iCalUID, orderBy or *ExtendedProperty → 400; an invalidated token →
  410 `fullSyncRequired`.
- events.insert: a client id must be base32hex (a-v, 0-9), 5-1024 chars, else 400; an id that
  exists (even deleted) → 409 `duplicate`.
- events.delete: the event becomes `cancelled` (it shows in sync); deleting again → 410 `deleted`.
- If-Match on patch/update/delete: an etag other than the event's → 412 `conditionNotMet`.
- freeBusy.query: at most 50 calendars, a range of at most 90 days, per-calendar `notFound`.
- events.watch (push notifications): `type` must be "web_hook", the address HTTPS (unless
  `allow_http_webhooks`), the channel id unique (else 400); answers an `api#channel` with a
  `resourceId` (the same for every channel of a calendar) and `expiration` in ms, from
  `params.ttl` (seconds, default one week). channels.stop takes {id, resourceId}; an unknown
  channel → 404. `notify(calendar_id)` delivers what Google would POST to each live channel's
  address: first a `sync` message, then `exists`, with the X-Goog-* headers.
- OAuth token endpoint `/token` (refresh_token and authorization_code grants; the code grant
  checks redirect_uri and the PKCE verifier when the consent had them), a consent page `/auth`
  that approves at once, and bearer-token checking (unknown or expired → 401).
Fault knobs: `fail_next`, `expire_sync_tokens`, `revoke_refresh_token`, `expire_access_tokens`,
`latency`, `page_size_cap`. Every request is recorded in `requests`.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import secrets
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit
from zoneinfo import ZoneInfo

JsonDict = dict[str, Any]

API_PREFIX = "/calendar/v3"
DEFAULT_MAX_RESULTS = 250
MAX_MAX_RESULTS = 2500
FREEBUSY_MAX_CALENDARS = 50
FREEBUSY_MAX_RANGE = timedelta(days=90)
DEFAULT_SCOPE = (
    "https://www.googleapis.com/auth/calendar.readonly "
    "https://www.googleapis.com/auth/calendar.events"
)
_EVENT_ID = re.compile(r"^[a-v0-9]{5,1024}$")
_CHANNEL_ID = re.compile(r"^[A-Za-z0-9\-_+/=]{1,64}$")  # the documented channel id alphabet
DEFAULT_CHANNEL_TTL_S = 7 * 24 * 3600
_PARAMS_FORBIDDEN_WITH_SYNC_TOKEN = (
    "iCalUID",
    "orderBy",
    "privateExtendedProperty",
    "q",
    "sharedExtendedProperty",
    "timeMin",
    "timeMax",
    "updatedMin",
)
_FAULT_REASONS = {
    403: ("usageLimits", "rateLimitExceeded", "Rate Limit Exceeded"),
    429: ("usageLimits", "rateLimitExceeded", "Rate Limit Exceeded"),
    500: ("global", "backendError", "Backend Error"),
    503: ("global", "backendError", "Service Unavailable"),
}


class ApiError(Exception):
    """Answer the current request with Google's JSON error format."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        *,
        domain: str = "global",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: JsonDict = {
            "error": {
                "errors": [{"domain": domain, "reason": reason, "message": message}],
                "code": status,
                "message": message,
            }
        }
        self.headers = headers or {}


class OAuthError(Exception):
    """Answer a token-endpoint request with an RFC 6749 §5.2 error."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.body = {"error": error, "error_description": description}


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    authorization: str | None


@dataclass
class Fault:
    status: int
    remaining: int
    retry_after: str | None
    reason: tuple[str, str, str]


@dataclass
class Calendar:
    calendar_id: str
    summary: str
    time_zone: str
    access_role: str
    primary: bool
    events: dict[str, JsonDict] = field(default_factory=dict)
    change_seq: dict[str, int] = field(default_factory=dict)  # event id -> last change


@dataclass
class Channel:
    """An open events.watch channel."""

    channel_id: str
    resource_id: str
    calendar_id: str
    address: str
    token: str | None
    expiration_ms: int
    messages_sent: int = 0


@dataclass(frozen=True)
class Delivery:
    """One notification POSTed to a channel's address, and the receiver's answer."""

    channel_id: str
    state: str
    status: int


@dataclass
class Listing:
    """A paged events.list in progress: a snapshot, so pages stay consistent."""

    calendar_id: str
    items: list[JsonDict]
    sync_seq: int
    max_results: int


def _now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_rfc3339(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"not an RFC 3339 timestamp with offset: {value!r}")
    return parsed


def _event_bound(when: JsonDict, calendar_zone: str) -> datetime:
    """An event start/end as an aware datetime; all-day dates are midnight in the calendar zone."""
    if "dateTime" in when:
        return parse_rfc3339(when["dateTime"])
    day = date.fromisoformat(when["date"])
    return datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(calendar_zone))


def _deleted_view(event: JsonDict) -> JsonDict:
    # Google guarantees only the id of a deleted event; clients must not rely on more.
    return {k: event[k] for k in ("kind", "etag", "id", "status", "updated") if k in event}


def _merge_patch(target: JsonDict, patch: JsonDict) -> None:
    """Patch semantics: nested objects merge, arrays and scalars replace."""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge_patch(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


class FakeGoogle:
    """The fake server and its state; thread-safe; use as a context manager."""

    def __init__(self, *, require_auth: bool = True) -> None:
        self.require_auth = require_auth
        self.latency = 0.0
        # Google may serve fewer items than maxResults per page; a cap makes paging testable
        # without thousands of events.
        self.page_size_cap: int | None = None
        self.requests: list[RecordedRequest] = []
        self.calendars: dict[str, Calendar] = {}
        self.clients: dict[str, str] = {}
        self._lock = threading.RLock()
        self._last_seq = 0  # change counter shared by all calendars, like Google's history ids
        self._faults: list[Fault] = []
        self._sync_tokens: dict[str, tuple[str, int]] = {}
        self._page_tokens: dict[str, tuple[Listing, int]] = {}
        self._refresh_tokens: dict[str, tuple[str, str]] = {}  # token -> (client id, scope)
        self._access_tokens: dict[str, float] = {}  # access token -> expiry (monotonic)
        self._auth_codes: dict[str, tuple[str, str]] = {}  # code -> (client id, scope)
        # code -> what the token request must repeat: redirect_uri and the PKCE challenge
        self._code_bindings: dict[str, dict[str, str]] = {}
        self.channels: dict[str, Channel] = {}
        # Google only calls HTTPS addresses; tests receive on plain HTTP at 127.0.0.1.
        self.allow_http_webhooks = False
        # Wall-clock seconds for channel expirations; tests move it to reach a renewal.
        self.clock: Callable[[], float] = time.time
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeGoogle:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        # A short poll interval keeps shutdown (and so every test teardown) fast.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeGoogle:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "server not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def api_endpoint(self) -> str:
        return f"{self.base_url}{API_PREFIX}/"

    @property
    def token_uri(self) -> str:
        return f"{self.base_url}/token"

    @property
    def auth_uri(self) -> str:
        return f"{self.base_url}/auth"

    # -- state set-up, as the mentor would change things in Google's own UI ---------------

    def add_calendar(
        self,
        calendar_id: str,
        *,
        summary: str | None = None,
        time_zone: str = "UTC",
        access_role: str = "owner",
        primary: bool = False,
    ) -> None:
        with self._lock:
            self.calendars[calendar_id] = Calendar(
                calendar_id, summary or calendar_id, time_zone, access_role, primary
            )

    def register_client(self, client_id: str = "client-1", client_secret: str = "s3cret") -> None:
        with self._lock:
            self.clients[client_id] = client_secret

    def issue_refresh_token(self, client_id: str = "client-1", scope: str = DEFAULT_SCOPE) -> str:
        with self._lock:
            self.clients.setdefault(client_id, "s3cret")
            token = "1//refresh-" + secrets.token_urlsafe(16)
            self._refresh_tokens[token] = (client_id, scope)
            return token

    def issue_access_token(self, lifetime: float = 3600.0) -> str:
        with self._lock:
            token = "ya29.access-" + secrets.token_urlsafe(16)
            self._access_tokens[token] = time.monotonic() + lifetime
            return token

    def put_event(self, calendar_id: str, event: JsonDict) -> JsonDict:
        """Create or replace an event server-side (as if edited in Google's UI)."""
        with self._lock:
            calendar = self._calendar(calendar_id)
            stored = self._complete_event(calendar, copy.deepcopy(event))
            self._store(calendar, stored)
            return copy.deepcopy(stored)

    def change_event(self, calendar_id: str, event_id: str, **fields: Any) -> JsonDict:
        with self._lock:
            calendar = self._calendar(calendar_id)
            stored = self._event(calendar, event_id)
            _merge_patch(stored, fields)
            self._store(calendar, stored)
            return copy.deepcopy(stored)

    def remove_event(self, calendar_id: str, event_id: str) -> None:
        self.change_event(calendar_id, event_id, status="cancelled")

    def stored_events(self, calendar_id: str, *, include_deleted: bool = False) -> list[JsonDict]:
        with self._lock:
            events = self._calendar(calendar_id).events.values()
            return [
                copy.deepcopy(e)
                for e in events
                if include_deleted or e.get("status") != "cancelled"
            ]

    # -- push notifications, as Google sends them ------------------------------------------

    def notify(self, calendar_id: str, *, timeout: float = 10.0) -> list[Delivery]:
        """POST a notification to every live channel watching the calendar: a channel's first
        message is `sync` (sent then followed by `exists`), later ones `exists`."""
        with self._lock:
            now_ms = int(self.clock() * 1000)
            live = [
                c
                for c in self.channels.values()
                if c.calendar_id == calendar_id and c.expiration_ms > now_ms
            ]
        deliveries = []
        for channel in live:  # outside the lock: the receiver may call this server back
            if channel.messages_sent == 0:
                deliveries.append(self._deliver(channel, "sync", timeout))
            deliveries.append(self._deliver(channel, "exists", timeout))
        return deliveries

    def _deliver(self, channel: Channel, state: str, timeout: float) -> Delivery:
        with self._lock:
            channel.messages_sent += 1
            number = channel.messages_sent
        expiration = datetime.fromtimestamp(channel.expiration_ms / 1000, UTC)
        headers = {
            "X-Goog-Channel-ID": channel.channel_id,
            "X-Goog-Channel-Expiration": format_datetime(expiration, usegmt=True),
            "X-Goog-Resource-ID": channel.resource_id,
            "X-Goog-Resource-URI": self._resource_uri(channel.calendar_id),
            "X-Goog-Resource-State": state,
            "X-Goog-Message-Number": str(number),
        }
        if channel.token is not None:
            headers["X-Goog-Channel-Token"] = channel.token
        request = urllib.request.Request(channel.address, data=b"", headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status = int(response.status)
        except urllib.error.HTTPError as error:
            status = error.code
        return Delivery(channel.channel_id, state, status)

    def _resource_uri(self, calendar_id: str) -> str:
        return f"{self.api_endpoint}calendars/{quote(calendar_id, safe='')}/events?alt=json"

    # -- fault knobs -----------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        count: int = 1,
        *,
        retry_after: str | None = None,
        reason: tuple[str, str, str] | None = None,
    ) -> None:
        """The next `count` API requests answer `status` (default reasons per Google's docs)."""
        with self._lock:
            chosen = reason or _FAULT_REASONS.get(status, ("global", "error", "Error"))
            self._faults.append(Fault(status, count, retry_after, chosen))

    def expire_sync_tokens(self) -> None:
        with self._lock:
            self._sync_tokens.clear()

    def revoke_refresh_token(self, token: str) -> None:
        with self._lock:
            self._refresh_tokens.pop(token, None)

    def expire_access_tokens(self) -> None:
        with self._lock:
            self._access_tokens.clear()

    def requests_to(self, method: str, path_suffix: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.method == method and r.path.endswith(path_suffix)]

    # -- request handling (called from the handler threads) --------------------------------

    def handle(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        body: Any,
        auth: str | None,
        if_match: str | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        if self.latency:
            time.sleep(self.latency)
        with self._lock:
            self.requests.append(RecordedRequest(method, path, query, body, auth))
            if path == "/token":
                return 200, self._token(body, auth), {}
            if path == "/auth":
                return 302, None, {"Location": self._consent(query)}
            if not path.startswith(API_PREFIX + "/"):
                raise ApiError(404, "notFound", "Not Found")
            self._check_auth(auth)
            self._inject_fault()
            route = path[len(API_PREFIX) :]
            status, payload = self._route(method, route, query, body, if_match)
            return status, payload, {}

    def _check_auth(self, auth: str | None) -> None:
        if not self.require_auth:
            return
        token = auth[len("Bearer ") :] if auth and auth.startswith("Bearer ") else None
        expiry = self._access_tokens.get(token or "")
        if expiry is None or expiry < time.monotonic():
            raise ApiError(
                401,
                "authError",
                "Invalid Credentials",
                headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
            )

    def _inject_fault(self) -> None:
        if not self._faults:
            return
        fault = self._faults[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            self._faults.pop(0)
        domain, reason, message = fault.reason
        headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
        raise ApiError(fault.status, reason, message, domain=domain, headers=headers)

    def _route(
        self,
        method: str,
        route: str,
        query: dict[str, list[str]],
        body: Any,
        if_match: str | None,
    ) -> tuple[int, Any]:
        parts = [unquote(p) for p in route.split("/") if p]
        handlers: dict[str, Callable[[], tuple[int, Any]]] = {}
        if parts == ["users", "me", "calendarList"] and method == "GET":
            return 200, self._calendar_list()
        if parts == ["freeBusy"] and method == "POST":
            return 200, self._freebusy(body)
        if parts == ["channels", "stop"] and method == "POST":
            return self._stop_channel(body)
        watch = len(parts) == 4 and parts[0] == "calendars" and parts[2:] == ["events", "watch"]
        if watch and method == "POST":
            return 200, self._watch(parts[1], body)
        if len(parts) == 2 and parts[0] == "calendars" and method == "GET":
            return 200, self._calendar_resource(parts[1])
        if len(parts) == 3 and parts[0] == "calendars" and parts[2] == "events":
            handlers = {
                "GET": lambda: (200, self._list_events(parts[1], query)),
                "POST": lambda: (200, self._insert(parts[1], query, body)),
            }
        elif len(parts) == 4 and parts[0] == "calendars" and parts[2] == "events":
            cal, eid = parts[1], parts[3]
            if if_match is not None and method in ("PATCH", "PUT", "DELETE"):
                self._check_if_match(cal, eid, if_match)
            handlers = {
                "GET": lambda: (200, self._get(cal, eid)),
                "PATCH": lambda: (200, self._patch(cal, eid, body)),
                "PUT": lambda: (200, self._update(cal, eid, body)),
                "DELETE": lambda: self._delete(cal, eid),
            }
        handler = handlers.get(method)
        if handler is None:
            raise ApiError(404, "notFound", "Not Found")
        return handler()

    # -- calendars -------------------------------------------------------------------------

    def _calendar(self, calendar_id: str) -> Calendar:
        calendar = self.calendars.get(calendar_id)
        if calendar is None:
            raise ApiError(404, "notFound", "Not Found")
        return calendar

    def _calendar_list(self) -> JsonDict:
        items = []
        for cal in self.calendars.values():
            entry: JsonDict = {
                "kind": "calendar#calendarListEntry",
                "id": cal.calendar_id,
                "summary": cal.summary,
                "timeZone": cal.time_zone,
                "accessRole": cal.access_role,
            }
            if cal.primary:
                entry["primary"] = True
            items.append(entry)
        return {"kind": "calendar#calendarList", "items": items}

    def _calendar_resource(self, calendar_id: str) -> JsonDict:
        cal = self._calendar(calendar_id)
        return {
            "kind": "calendar#calendar",
            "id": cal.calendar_id,
            "summary": cal.summary,
            "timeZone": cal.time_zone,
        }

    # -- events ----------------------------------------------------------------------------

    def _event(self, calendar: Calendar, event_id: str) -> JsonDict:
        event = calendar.events.get(event_id)
        if event is None:
            raise ApiError(404, "notFound", "Not Found")
        return event

    def _complete_event(self, calendar: Calendar, event: JsonDict) -> JsonDict:
        if "start" not in event or "end" not in event:
            raise ApiError(400, "required", "Missing end time.")
        event_id = event.get("id") or secrets.token_hex(13)
        event["id"] = event_id
        event.setdefault("kind", "calendar#event")
        event.setdefault("status", "confirmed")
        event.setdefault("created", _now_rfc3339())
        event.setdefault("iCalUID", f"{event_id}@google.com")
        event.setdefault("sequence", 0)
        event.setdefault("eventType", "default")
        owner = {"email": calendar.calendar_id, "self": True}
        event.setdefault("creator", owner)
        event.setdefault("organizer", owner)
        return event

    def _store(self, calendar: Calendar, event: JsonDict) -> None:
        self._last_seq += 1
        seq = self._last_seq
        event["updated"] = _now_rfc3339()
        event["etag"] = f'"{seq}"'
        calendar.events[event["id"]] = event
        calendar.change_seq[event["id"]] = seq

    def _insert(self, calendar_id: str, query: dict[str, list[str]], body: Any) -> JsonDict:
        calendar = self._calendar(calendar_id)
        if not isinstance(body, dict):
            raise ApiError(400, "parseError", "Parse Error")
        event_id = body.get("id")
        if event_id is not None and not _EVENT_ID.match(event_id):
            raise ApiError(400, "invalid", "Invalid resource id value.")
        if event_id in calendar.events:
            raise ApiError(409, "duplicate", "The requested identifier already exists.")
        event = self._complete_event(calendar, copy.deepcopy(body))
        self._apply_conference(event, query)
        self._store(calendar, event)
        return copy.deepcopy(event)

    def _apply_conference(self, event: JsonDict, query: dict[str, list[str]]) -> None:
        conference = event.get("conferenceData")
        if conference is None:
            return
        # Without conferenceDataVersion=1 Google ignores conference data on writes.
        if query.get("conferenceDataVersion", ["0"])[0] != "1":
            del event["conferenceData"]
            return
        request = conference.get("createRequest")
        if request is None:
            return
        code = secrets.token_hex(5)
        request["status"] = {"statusCode": "success"}
        conference["conferenceId"] = code
        conference["entryPoints"] = [
            {"entryPointType": "video", "uri": f"https://meet.google.com/{code}"}
        ]
        event["hangoutLink"] = f"https://meet.google.com/{code}"

    def _check_if_match(self, calendar_id: str, event_id: str, if_match: str) -> None:
        event = self._event(self._calendar(calendar_id), event_id)
        if if_match != "*" and if_match != event["etag"]:
            raise ApiError(412, "conditionNotMet", "Precondition Failed")

    def _get(self, calendar_id: str, event_id: str) -> JsonDict:
        return copy.deepcopy(self._event(self._calendar(calendar_id), event_id))

    def _patch(self, calendar_id: str, event_id: str, body: Any) -> JsonDict:
        calendar = self._calendar(calendar_id)
        event = self._event(calendar, event_id)
        changes = {k: v for k, v in dict(body).items() if k not in ("id", "etag", "kind")}
        _merge_patch(event, changes)
        event["sequence"] = int(event.get("sequence", 0)) + 1
        self._store(calendar, event)
        return copy.deepcopy(event)

    def _update(self, calendar_id: str, event_id: str, body: Any) -> JsonDict:
        calendar = self._calendar(calendar_id)
        old = self._event(calendar, event_id)
        event = copy.deepcopy(dict(body))
        event["id"] = event_id
        event["created"] = old["created"]
        event["iCalUID"] = old["iCalUID"]
        event["sequence"] = int(old.get("sequence", 0)) + 1
        self._store(calendar, self._complete_event(calendar, event))
        return copy.deepcopy(event)

    def _delete(self, calendar_id: str, event_id: str) -> tuple[int, None]:
        calendar = self._calendar(calendar_id)
        event = self._event(calendar, event_id)
        if event.get("status") == "cancelled":
            raise ApiError(410, "deleted", "Resource has been deleted")
        event["status"] = "cancelled"
        self._store(calendar, event)
        return 204, None

    # -- events.watch and channels.stop ----------------------------------------------------

    def _watch(self, calendar_id: str, body: Any) -> JsonDict:
        self._calendar(calendar_id)
        if not isinstance(body, dict):
            raise ApiError(400, "parseError", "Parse Error")
        channel_id = str(body.get("id") or "")
        if not _CHANNEL_ID.match(channel_id):
            raise ApiError(400, "invalid", "Invalid channel id.")
        if channel_id in self.channels:
            raise ApiError(400, "channelIdNotUnique", "Channel id not unique.", domain="push")
        if body.get("type") not in ("web_hook", "webhook"):
            raise ApiError(400, "invalid", "Invalid channel type.", domain="push")
        self._check_address(str(body.get("address") or ""))
        token = body.get("token")
        if token is not None and len(str(token)) > 256:
            raise ApiError(400, "invalid", "Channel token too long.", domain="push")
        ttl = int((body.get("params") or {}).get("ttl") or DEFAULT_CHANNEL_TTL_S)
        channel = Channel(
            channel_id=channel_id,
            # Google's resourceId names the watched resource: the same for each of its channels.
            resource_id=hashlib.sha256(calendar_id.encode()).hexdigest()[:27],
            calendar_id=calendar_id,
            address=str(body["address"]),
            token=None if token is None else str(token),
            expiration_ms=int(self.clock() * 1000) + ttl * 1000,
        )
        self.channels[channel_id] = channel
        response: JsonDict = {
            "kind": "api#channel",
            "id": channel.channel_id,
            "resourceId": channel.resource_id,
            "resourceUri": self._resource_uri(calendar_id),
            "expiration": str(channel.expiration_ms),  # int64 travels as a JSON string
        }
        if channel.token is not None:
            response["token"] = channel.token
        return response

    def _check_address(self, address: str) -> None:
        scheme = urlsplit(address).scheme
        if scheme == "https" or (scheme == "http" and self.allow_http_webhooks):
            return
        raise ApiError(400, "push.webhookUrlNotHttps", f"WebHook callback must be HTTPS: {address}")

    def _stop_channel(self, body: Any) -> tuple[int, None]:
        if not isinstance(body, dict) or not body.get("id") or not body.get("resourceId"):
            raise ApiError(400, "required", "Required parameter: id, resourceId")
        channel = self.channels.get(str(body["id"]))
        if channel is None or channel.resource_id != body["resourceId"]:
            raise ApiError(404, "notFound", f"Channel '{body['id']}' not found for project.")
        del self.channels[channel.channel_id]
        return 204, None

    # -- events.list -----------------------------------------------------------------------

    def _list_events(self, calendar_id: str, query: dict[str, list[str]]) -> JsonDict:
        calendar = self._calendar(calendar_id)
        page_token = _single(query, "pageToken")
        if page_token is not None:
            saved = self._page_tokens.pop(page_token, None)
            if saved is None or saved[0].calendar_id != calendar_id:
                raise ApiError(400, "invalid", "Invalid page token value.")
            return self._page(calendar, *saved)
        max_results = min(int(_single(query, "maxResults") or DEFAULT_MAX_RESULTS), MAX_MAX_RESULTS)
        if max_results < 1:
            raise ApiError(400, "invalid", "Invalid value for: maxResults")
        max_results = min(max_results, self.page_size_cap or max_results)
        sync_token = _single(query, "syncToken")
        if sync_token is not None:
            listing = self._incremental_listing(calendar, query, sync_token, max_results)
        else:
            listing = self._full_listing(calendar, query, max_results)
        return self._page(calendar, listing, 0)

    def _incremental_listing(
        self, calendar: Calendar, query: dict[str, list[str]], token: str, max_results: int
    ) -> Listing:
        combined = [p for p in _PARAMS_FORBIDDEN_WITH_SYNC_TOKEN if p in query]
        if combined or _single(query, "showDeleted") == "false":
            name = combined[0] if combined else "showDeleted"
            raise ApiError(400, "invalid", f"Sync token cannot be combined with {name}.")
        saved = self._sync_tokens.get(token)
        if saved is None or saved[0] != calendar.calendar_id:
            raise ApiError(
                410,
                "fullSyncRequired",
                "Sync token is no longer valid, a full sync is required.",
                domain="calendar",
            )
        since = saved[1]
        changed = [
            self._listed(calendar, eid)
            for eid, seq in sorted(calendar.change_seq.items(), key=lambda kv: kv[1])
            if seq > since
        ]
        return Listing(calendar.calendar_id, changed, self._last_seq, max_results)

    def _full_listing(
        self, calendar: Calendar, query: dict[str, list[str]], max_results: int
    ) -> Listing:
        show_deleted = _single(query, "showDeleted") == "true"
        time_min = _optional_time(query, "timeMin")
        time_max = _optional_time(query, "timeMax")
        items = []
        for event_id in sorted(calendar.events, key=lambda eid: calendar.change_seq[eid]):
            event = calendar.events[event_id]
            if event.get("status") == "cancelled" and not show_deleted:
                continue
            if not self._in_range(calendar, event, time_min, time_max):
                continue
            items.append(self._listed(calendar, event_id))
        return Listing(calendar.calendar_id, items, self._last_seq, max_results)

    def _in_range(
        self, calendar: Calendar, event: JsonDict, lo: datetime | None, hi: datetime | None
    ) -> bool:
        if "start" not in event:  # a deleted event seen only by id
            return True
        start = _event_bound(event["start"], calendar.time_zone)
        end = _event_bound(event["end"], calendar.time_zone)
        return (lo is None or end > lo) and (hi is None or start < hi)

    def _listed(self, calendar: Calendar, event_id: str) -> JsonDict:
        event = calendar.events[event_id]
        if event.get("status") == "cancelled":
            return _deleted_view(event)
        return copy.deepcopy(event)

    def _page(self, calendar: Calendar, listing: Listing, offset: int) -> JsonDict:
        end = offset + listing.max_results
        response: JsonDict = {
            "kind": "calendar#events",
            "summary": calendar.summary,
            "timeZone": calendar.time_zone,
            "updated": _now_rfc3339(),
            "accessRole": calendar.access_role,
            "items": listing.items[offset:end],
        }
        if end < len(listing.items):
            token = secrets.token_urlsafe(12)
            self._page_tokens[token] = (listing, end)
            response["nextPageToken"] = token
        else:
            token = base64.urlsafe_b64encode(secrets.token_bytes(12)).decode()
            self._sync_tokens[token] = (calendar.calendar_id, listing.sync_seq)
            response["nextSyncToken"] = token
        return response

    # -- freeBusy --------------------------------------------------------------------------

    def _freebusy(self, body: Any) -> JsonDict:
        if not isinstance(body, dict) or "timeMin" not in body or "timeMax" not in body:
            raise ApiError(400, "required", "Missing timeMin or timeMax.")
        lo = parse_rfc3339(body["timeMin"])
        hi = parse_rfc3339(body["timeMax"])
        if hi <= lo:
            raise ApiError(400, "timeRangeEmpty", "The specified time range is empty.")
        if hi - lo > FREEBUSY_MAX_RANGE:
            raise ApiError(400, "timeRangeTooLong", "The requested time range is too long.")
        items = body.get("items") or []
        if len(items) > FREEBUSY_MAX_CALENDARS:
            raise ApiError(
                400, "tooManyCalendarsRequested", "Too many calendars requested in one query."
            )
        calendars = {item["id"]: self._busy_of(item["id"], lo, hi) for item in items}
        return {
            "kind": "calendar#freeBusy",
            "timeMin": body["timeMin"],
            "timeMax": body["timeMax"],
            "calendars": calendars,
        }

    def _busy_of(self, calendar_id: str, lo: datetime, hi: datetime) -> JsonDict:
        calendar = self.calendars.get(calendar_id)
        if calendar is None:
            return {"errors": [{"domain": "global", "reason": "notFound"}], "busy": []}
        spans = sorted(
            (max(start, lo), min(end, hi))
            for start, end in self._blocking_spans(calendar)
            if end > lo and start < hi
        )
        merged: list[list[datetime]] = []
        for start, end in spans:
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        return {"busy": [{"start": _z(s), "end": _z(e)} for s, e in merged]}

    def _blocking_spans(self, calendar: Calendar) -> Iterator[tuple[datetime, datetime]]:
        for event in calendar.events.values():
            if event.get("status") == "cancelled" or event.get("transparency") == "transparent":
                continue
            if any(
                a.get("self") and a.get("responseStatus") == "declined"
                for a in event.get("attendees", [])
            ):
                continue
            yield (
                _event_bound(event["start"], calendar.time_zone).astimezone(UTC),
                _event_bound(event["end"], calendar.time_zone).astimezone(UTC),
            )

    # -- OAuth -----------------------------------------------------------------------------

    def _token(self, form: Any, auth: str | None) -> JsonDict:
        fields = {k: v[0] for k, v in (form or {}).items()}
        fields.update(_basic_auth_client(auth))
        client_id = fields.get("client_id", "")
        if self.clients.get(client_id) != fields.get("client_secret"):
            raise OAuthError(401, "invalid_client", "The OAuth client was not found.")
        grant = fields.get("grant_type")
        if grant == "refresh_token":
            granted = self._refresh_tokens.get(fields.get("refresh_token", ""))
            if granted is None or granted[0] != client_id:
                raise OAuthError(400, "invalid_grant", "Token has been expired or revoked.")
            return self._new_access_token(granted[1])
        if grant == "authorization_code":
            granted = self._auth_codes.pop(fields.get("code", ""), None)
            if granted is None or granted[0] != client_id:
                raise OAuthError(400, "invalid_grant", "Malformed auth code.")
            _check_code_binding(self._code_bindings.pop(fields["code"], {}), fields)
            response = self._new_access_token(granted[1])
            response["refresh_token"] = self.issue_refresh_token(client_id, granted[1])
            return response
        raise OAuthError(400, "unsupported_grant_type", f"Invalid grant_type: {grant}")

    def _new_access_token(self, scope: str) -> JsonDict:
        return {
            "access_token": self.issue_access_token(),
            "expires_in": 3599,
            "scope": scope,
            "token_type": "Bearer",
        }

    def _consent(self, query: dict[str, list[str]]) -> str:
        """The consent page, approving at once: redirect back with a one-time code."""
        client_id = _single(query, "client_id") or ""
        redirect_uri = _single(query, "redirect_uri") or ""
        code = "4/code-" + secrets.token_urlsafe(12)
        scope = _single(query, "scope") or ""
        self._auth_codes[code] = (client_id, scope)
        self._code_bindings[code] = {
            name: value
            for name in ("redirect_uri", "code_challenge", "code_challenge_method")
            if (value := _single(query, name)) is not None
        }
        params = {"code": code, "scope": scope}
        state = _single(query, "state")
        if state is not None:
            params["state"] = state
        return f"{redirect_uri}?{urlencode(params)}"


def _check_code_binding(binding: dict[str, str], fields: dict[str, str]) -> None:
    """Like Google: the token request repeats the consent's redirect_uri, and with PKCE
    (RFC 7636) sends the verifier whose S256 (or plain) form is the consent's challenge."""
    if "redirect_uri" in binding and fields.get("redirect_uri") != binding["redirect_uri"]:
        raise OAuthError(400, "redirect_uri_mismatch", "Bad Request")
    challenge = binding.get("code_challenge")
    if challenge is None:
        return
    verifier = fields.get("code_verifier")
    if not verifier:
        raise OAuthError(400, "invalid_grant", "Missing code verifier.")
    if binding.get("code_challenge_method", "plain") == "S256":
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        verifier = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    if verifier != challenge:
        raise OAuthError(400, "invalid_grant", "Invalid code verifier.")


def _single(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _basic_auth_client(auth: str | None) -> dict[str, str]:
    """Client credentials sent as HTTP Basic auth (RFC 6749 §2.3.1), as requests-oauthlib does."""
    if not auth or not auth.startswith("Basic "):
        return {}
    client_id, _, secret = base64.b64decode(auth[len("Basic ") :]).decode().partition(":")
    return {"client_id": unquote(client_id), "client_secret": unquote(secret)}


def _optional_time(query: dict[str, list[str]], name: str) -> datetime | None:
    value = _single(query, name)
    if value is None:
        return None
    try:
        return parse_rfc3339(value)
    except ValueError as exc:
        raise ApiError(400, "invalid", f"Bad Request: {name}") from exc


def _z(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _make_handler(fake: FakeGoogle) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in two writes; without this, Nagle's algorithm and
            # delayed ACKs add ~40 ms to every keep-alive request.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output quiet

        def _serve(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query, keep_blank_values=True)
            body = self._read_body()
            try:
                status, payload, headers = fake.handle(
                    self.command,
                    url.path,
                    query,
                    body,
                    self.headers.get("Authorization"),
                    self.headers.get("If-Match"),
                )
            except ApiError as exc:
                status, payload, headers = exc.status, exc.body, exc.headers
            except OAuthError as exc:
                status, payload, headers = exc.status, exc.body, {}
            self._respond(status, payload, headers)

        def _read_body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if not raw:
                return None
            if self.headers.get("Content-Type", "").startswith("application/json"):
                return json.loads(raw)
            return parse_qs(raw.decode())

        def _respond(self, status: int, payload: Any, headers: dict[str, str]) -> None:
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            if data:
                self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

    return Handler
