"""CalDAV connector (RFC 4791, RFC 6578) on python-caldav's DAVClient.

python-caldav supplies the HTTP session, basic/digest auth negotiation, timeouts and TLS
settings; the WebDAV requests themselves are built and parsed here, because the sync
strategy (sync-collection + one calendar-multiget, etag comparison as a fallback) and the
error mapping need exact control over how many requests are made and what each status means.

Pull state is opaque to callers but has two shapes:
- ``sync:<token>``: the server's RFC 6578 sync token;
- ``ctag:<json>``: ``{"ctag": ..., "etags": {href: etag}}`` when sync-collection is off.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote, urljoin, urlsplit
from xml.sax.saxutils import escape

from caldav.davclient import DAVClient
from caldav.lib import error as caldav_error
from caldav.lib.http_sync import requests as http

from connectors._caldav_state import (
    _CTAG_PREFIX,
    _SYNC_PREFIX,
    _decode_ctag_state,
    _encode_ctag_state,
)
from connectors._dav_errors import _authorization_error, _raise_for_status
from connectors._dav_xml import (
    _CALENDAR_PROPS,
    _CTAG_PROPS,
    _DISCOVERY_PROPS,
    _ETAG_PROPS,
    _NAMESPACES,
    CALDAV,
    CALSERVER,
    DAV,
    _child_href,
    _DavEntry,
    _ical_utc,
    _is_calendar,
    _parse_multistatus,
    _path,
    _read_only,
    _same_path,
    _supports_events,
    _tag,
    _tree,
    _zone_from_calendar_timezone,
)
from connectors._ical_write import event_to_ical
from connectors.base import (
    BusyPeriod,
    CalendarInfo,
    Changes,
    Connector,
    EventRef,
    EventSpec,
    NotFound,
    PreconditionFailed,
    ProtocolError,
    RemoteObject,
    StaleSyncState,
    TransientError,
)
from syncd.busy import MalformedCalendarData, busy_from_ical

log = logging.getLogger(__name__)

_MULTIGET_BATCH = 1000  # hrefs per calendar-multiget: fewer round trips, bounded response size
_MAX_SYNC_ROUNDS = 100  # truncated sync-collection replies (RFC 6578 §3.6) we will follow


class CalDAVConnector(Connector):
    """One CalDAV account, reached from a server, principal or calendar collection URL."""

    provider = "caldav"

    def __init__(
        self,
        url: str,
        username: str | None = None,
        password: str | None = None,
        *,
        timeout: float = 15.0,
        ssl_verify: bool = True,
        use_sync_collection: bool = True,
        default_timezone: str = "UTC",
        mentor_emails: Sequence[str] = (),
    ) -> None:
        self._url = url if url.endswith("/") else url + "/"
        self._use_sync_collection = use_sync_collection
        self._default_timezone = default_timezone
        self._mentor_emails = tuple(mentor_emails)
        self._calendar_zones: dict[str, str | None] = {}
        self.request_count = 0  # logical requests sent; tests and benchmarks read it
        self._client = DAVClient(
            url=self._url,
            username=username,
            password=password,
            timeout=timeout,  # type: ignore[arg-type]  # niquests accepts float seconds
            ssl_verify_cert=ssl_verify,
            enable_rfc6764=False,
        )

    # ----------------------------------------------------------------- discovery

    def list_calendars(self) -> list[CalendarInfo]:
        start = self._propfind(self._url, _DISCOVERY_PROPS, depth=0)
        entry = self._entry_for(start, self._url)
        if entry is not None and _is_calendar(entry):
            return [self._calendar_info(self._url, entry)]
        home = self._calendar_home(entry)
        members = self._propfind(home, _CALENDAR_PROPS, depth=1)
        calendars = [
            self._calendar_info(urljoin(home, member.href), member)
            for member in members
            if _is_calendar(member) and _supports_events(member)
        ]
        log.debug("discovered %d calendars under %s", len(calendars), home)
        return calendars

    def _calendar_home(self, entry: _DavEntry | None) -> str:
        if entry is None:
            raise ProtocolError(f"{self._url}: PROPFIND did not describe the URL itself")
        home = _child_href(entry, CALDAV, "calendar-home-set")
        if home is not None:
            return urljoin(self._url, home)
        principal = _child_href(entry, DAV, "current-user-principal")
        if principal is None:
            raise ProtocolError(f"{self._url}: no calendar-home-set or current-user-principal")
        principal_url = urljoin(self._url, principal)
        found = self._entry_for(self._propfind(principal_url, _DISCOVERY_PROPS, 0), principal_url)
        home = _child_href(found, CALDAV, "calendar-home-set") if found else None
        if home is None:
            raise ProtocolError(f"{principal_url}: principal has no calendar-home-set")
        return urljoin(principal_url, home)

    def _calendar_info(self, url: str, entry: _DavEntry) -> CalendarInfo:
        url = _with_slash(url)
        zone = _zone_from_calendar_timezone(entry.text(CALDAV, "calendar-timezone"))
        self._calendar_zones[url] = zone
        name = entry.text(DAV, "displayname") or urlsplit(url).path.rstrip("/").split("/")[-1]
        return CalendarInfo(remote_id=url, name=name, timezone=zone, read_only=_read_only(entry))

    # ---------------------------------------------------------------------- pull

    def pull(self, calendar: str, state: str | None) -> Changes:
        calendar = _with_slash(calendar)
        if state is None:
            return self._full_pull(calendar)
        if self._use_sync_collection and state.startswith(_SYNC_PREFIX):
            return self._sync_pull(calendar, state[len(_SYNC_PREFIX) :])
        if not self._use_sync_collection and state.startswith(_CTAG_PREFIX):
            return self._ctag_pull(calendar, _decode_ctag_state(state))
        raise StaleSyncState(f"{calendar}: state is not one this connector issued")

    def _full_pull(self, calendar: str) -> Changes:
        zone = self._fetch_calendar_zone(calendar)
        if self._use_sync_collection:
            changes = self._sync_pull(calendar, "")
        else:
            changes = self._ctag_pull(calendar, None)
        return Changes(
            upserts=changes.upserts,
            deleted=(),
            state=changes.state,
            full=True,
            calendar_timezone=zone,
        )

    def _fetch_calendar_zone(self, calendar: str) -> str | None:
        entry = self._entry_for(self._propfind(calendar, _CALENDAR_PROPS, 0), calendar)
        if entry is None:
            raise ProtocolError(f"{calendar}: PROPFIND did not describe the calendar")
        if not _is_calendar(entry):
            raise NotFound(f"{calendar} is not a calendar collection")
        zone = _zone_from_calendar_timezone(entry.text(CALDAV, "calendar-timezone"))
        self._calendar_zones[calendar] = zone
        return zone

    def _sync_pull(self, calendar: str, token: str) -> Changes:
        changed: list[str] = []
        deleted: list[str] = []
        for _ in range(_MAX_SYNC_ROUNDS):
            entries, token, truncated = self._sync_collection(calendar, token)
            for entry in entries:
                (deleted if entry.status == 404 else changed).append(entry.href)
            if not truncated:
                break
        upserts, vanished = self._multiget(calendar, _unique(changed))
        log.debug("sync pull of %s: %d changed, %d deleted", calendar, len(upserts), len(deleted))
        return Changes(upserts=upserts, deleted=deleted + vanished, state=_SYNC_PREFIX + token)

    def _sync_collection(self, calendar: str, token: str) -> tuple[list[_DavEntry], str, bool]:
        body = (
            f'<?xml version="1.0" encoding="utf-8"?><D:sync-collection {_NAMESPACES}>'
            f"<D:sync-token>{escape(token)}</D:sync-token><D:sync-level>1</D:sync-level>"
            "<D:prop><D:getetag/></D:prop></D:sync-collection>"
        )
        response = self._request(calendar, "REPORT", body, {"Depth": "1"}, sync=True)
        tree = _tree(response, calendar)
        new_token = tree.findtext(_tag(DAV, "sync-token"))
        if not new_token:
            raise ProtocolError(f"{calendar}: sync-collection reply has no sync-token")
        own_path = urlsplit(calendar).path
        entries = _parse_multistatus(tree)
        truncated = any(_same_path(e.href, own_path) and e.status == 507 for e in entries)
        members = [e for e in entries if not _same_path(e.href, own_path)]
        return members, new_token.strip(), truncated

    def _ctag_pull(self, calendar: str, previous: Mapping[str, Any] | None) -> Changes:
        ctag = self._ctag(calendar)
        if previous is not None and ctag is not None and previous.get("ctag") == ctag:
            return Changes(upserts=(), deleted=(), state=_encode_ctag_state(ctag, previous))
        etags = self._list_etags(calendar)
        known: Mapping[str, str] = previous.get("etags", {}) if previous else {}
        changed = [href for href, etag in etags.items() if known.get(href) != etag]
        upserts, vanished = self._multiget(calendar, changed)
        for href in vanished:
            etags.pop(href, None)
        deleted = [href for href in known if href not in etags] + vanished
        state = _encode_ctag_state(ctag, {"etags": etags})
        return Changes(upserts=upserts, deleted=_unique(deleted), state=state)

    def _ctag(self, calendar: str) -> str | None:
        entry = self._entry_for(self._propfind(calendar, _CTAG_PROPS, 0), calendar)
        return entry.text(CALSERVER, "getctag") if entry else None

    def _list_etags(self, calendar: str) -> dict[str, str]:
        own_path = urlsplit(calendar).path
        etags: dict[str, str] = {}
        for entry in self._propfind(calendar, _ETAG_PROPS, depth=1):
            etag = entry.text(DAV, "getetag")
            if etag is not None and not _same_path(entry.href, own_path):
                etags[entry.href] = etag
        return etags

    def _multiget(
        self, calendar: str, hrefs: Sequence[str]
    ) -> tuple[list[RemoteObject], list[str]]:
        """Fetch objects in calendar-multiget batches; also returns hrefs that vanished."""
        found: list[RemoteObject] = []
        vanished: list[str] = []
        for start in range(0, len(hrefs), _MULTIGET_BATCH):
            batch = hrefs[start : start + _MULTIGET_BATCH]
            for entry in self._multiget_batch(calendar, batch):
                data = entry.text(CALDAV, "calendar-data")
                if entry.status == 404 or data is None:
                    vanished.append(entry.href)
                    continue
                etag = entry.text(DAV, "getetag")
                found.append(RemoteObject(ref=entry.href, etag=etag, kind="ical", data=data))
        return found, vanished

    def _multiget_batch(self, calendar: str, hrefs: Sequence[str]) -> list[_DavEntry]:
        href_xml = "".join(f"<D:href>{escape(href)}</D:href>" for href in hrefs)
        body = (
            f'<?xml version="1.0" encoding="utf-8"?><C:calendar-multiget {_NAMESPACES}>'
            f"<D:prop><D:getetag/><C:calendar-data/></D:prop>{href_xml}</C:calendar-multiget>"
        )
        response = self._request(calendar, "REPORT", body, {"Depth": "1"})
        return _parse_multistatus(_tree(response, calendar))

    # ---------------------------------------------------------------------- busy

    def busy(self, calendars: Sequence[str], start: datetime, end: datetime) -> list[BusyPeriod]:
        periods: list[BusyPeriod] = []
        for calendar in calendars:
            calendar = _with_slash(calendar)
            objects = self._query_time_range(calendar, start, end)
            zone = self._calendar_zones.get(calendar) or self._default_timezone
            periods.extend(
                busy_periods_from_objects(
                    objects,
                    start=start,
                    end=end,
                    default_timezone=zone,
                    mentor_emails=self._mentor_emails,
                )
            )
        return sorted(periods, key=lambda period: (period.start, period.end))

    def _query_time_range(
        self, calendar: str, start: datetime, end: datetime
    ) -> list[RemoteObject]:
        body = (
            f'<?xml version="1.0" encoding="utf-8"?><C:calendar-query {_NAMESPACES}>'
            "<D:prop><D:getetag/><C:calendar-data/></D:prop>"
            '<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">'
            f'<C:time-range start="{_ical_utc(start)}" end="{_ical_utc(end)}"/>'
            "</C:comp-filter></C:comp-filter></C:filter></C:calendar-query>"
        )
        response = self._request(calendar, "REPORT", body, {"Depth": "1"})
        return [
            RemoteObject(ref=entry.href, etag=entry.text(DAV, "getetag"), kind="ical", data=data)
            for entry in _parse_multistatus(_tree(response, calendar))
            if (data := entry.text(CALDAV, "calendar-data")) is not None
        ]

    # -------------------------------------------------------------------- writes

    def put_event(self, calendar: str, event: EventSpec, ref: EventRef | None = None) -> EventRef:
        body = event_to_ical(event)
        headers = {"Content-Type": "text/calendar; charset=utf-8"}
        if ref is None:
            href = urljoin(_with_slash(calendar), quote(event.event_key) + ".ics")
            return self._create(href, body, headers)
        if ref.etag:
            headers["If-Match"] = ref.etag
        url = urljoin(_with_slash(calendar), ref.ref)
        response = self._request(url, "PUT", body, headers)
        return EventRef(ref=_path(url), etag=response.headers.get("ETag"))

    def _create(self, href: str, body: str, headers: dict[str, str]) -> EventRef:
        try:
            response = self._request(href, "PUT", body, {**headers, "If-None-Match": "*"})
        except PreconditionFailed:
            # An earlier attempt (maybe before a crash) already created it: same booking.
            log.info("event %s already exists; treating the create as done", _path(href))
            return EventRef(ref=_path(href), etag=None)
        return EventRef(ref=_path(href), etag=response.headers.get("ETag"))

    def delete_event(self, calendar: str, ref: EventRef) -> None:
        url = urljoin(_with_slash(calendar), ref.ref)
        try:
            self._request(url, "DELETE")
        except NotFound:
            log.debug("event %s was already gone", ref.ref)

    def close(self) -> None:
        self._client.close()

    # ------------------------------------------------------------------ transport

    def _propfind(self, url: str, props: str, depth: int) -> list[_DavEntry]:
        body = (
            f'<?xml version="1.0" encoding="utf-8"?><D:propfind {_NAMESPACES}>{props}</D:propfind>'
        )
        response = self._request(url, "PROPFIND", body, {"Depth": str(depth)})
        return _parse_multistatus(_tree(response, url))

    def _entry_for(self, entries: Sequence[_DavEntry], url: str) -> _DavEntry | None:
        path = urlsplit(url).path
        matching = [entry for entry in entries if _same_path(entry.href, path)]
        if matching:
            return matching[0]
        return entries[0] if len(entries) == 1 else None

    def _request(
        self,
        url: str,
        method: str,
        body: str = "",
        headers: Mapping[str, str] | None = None,
        *,
        sync: bool = False,
    ) -> Any:
        self.request_count += 1
        headers = {"Content-Type": "application/xml; charset=utf-8", **(headers or {})}
        try:
            response = self._client.request(url, method, body, headers)
        except caldav_error.AuthorizationError as exc:
            raise _authorization_error(method, url, exc, sync=sync) from exc
        except caldav_error.RateLimitError as exc:
            raise TransientError(
                f"{method} {url}: rate limited", retry_after=exc.retry_after_seconds
            ) from exc
        except http.exceptions.RequestException as exc:
            raise TransientError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
        except SyntaxError as exc:  # lxml's XMLSyntaxError: the body claimed to be XML
            raise ProtocolError(f"{method} {url}: unparseable XML reply: {exc}") from exc
        _raise_for_status(method, url, response, sync=sync)
        return response


# ---------------------------------------------------------------------- helpers


def _with_slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


# ------------------------------------------------------------- shared with others


def busy_periods_from_objects(
    objects: Iterable[RemoteObject],
    *,
    start: datetime,
    end: datetime,
    default_timezone: str,
    mentor_emails: Sequence[str] = (),
) -> list[BusyPeriod]:
    """Busy periods of iCalendar objects, clipped to [start, end); malformed ones are skipped."""
    periods: list[BusyPeriod] = []
    for item in objects:
        try:
            occurrences = busy_from_ical(
                str(item.data),
                window_start=start,
                window_end=end,
                default_timezone=default_timezone,
                mentor_emails=mentor_emails,
            )
        except MalformedCalendarData as exc:
            log.warning("skipping malformed calendar object %s: %s", item.ref, exc)
            continue
        periods.extend(
            BusyPeriod(start=max(o.start, start), end=min(o.end, end)) for o in occurrences
        )
    return periods


__all__ = [
    "CalDAVConnector",
    "busy_periods_from_objects",
    "event_to_ical",
]
