"""DAV XML of the CalDAV connector: namespaces, request properties, multistatus parsing."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import icalendar

from connectors.base import ProtocolError

log = logging.getLogger("connectors.caldav")  # records keep the public module's logger name

DAV = "DAV:"
CALDAV = "urn:ietf:params:xml:ns:caldav"
CALSERVER = "http://calendarserver.org/ns/"
_NAMESPACES = f'xmlns:D="{DAV}" xmlns:C="{CALDAV}" xmlns:CS="{CALSERVER}"'


def _tag(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}"


@dataclass
class _DavEntry:
    """One DAV:response of a multistatus: its href, status and the properties found."""

    href: str
    status: int | None
    props: dict[str, Any] = field(default_factory=dict)

    def text(self, namespace: str, name: str) -> str | None:
        element = self.props.get(_tag(namespace, name))
        if element is None or element.text is None:
            return None
        return str(element.text)


# --------------------------------------------------------------------- requests

_DISCOVERY_PROPS = (
    "<D:prop><D:resourcetype/><D:displayname/><D:current-user-principal/>"
    "<C:calendar-home-set/><C:calendar-timezone/><D:current-user-privilege-set/></D:prop>"
)
_CALENDAR_PROPS = (
    "<D:prop><D:resourcetype/><D:displayname/><C:calendar-timezone/>"
    "<C:supported-calendar-component-set/><D:current-user-privilege-set/></D:prop>"
)
_CTAG_PROPS = "<D:prop><CS:getctag/></D:prop>"
_ETAG_PROPS = "<D:prop><D:resourcetype/><D:getetag/></D:prop>"


# -------------------------------------------------------------------- XML parsing


def _tree(response: Any, url: str) -> Any:
    tree = response.tree
    if tree is None or tree.tag != _tag(DAV, "multistatus"):
        raise ProtocolError(f"{url}: expected a DAV multistatus reply, got HTTP {response.status}")
    return tree


def _parse_multistatus(tree: Any) -> list[_DavEntry]:
    return [_parse_response(element) for element in tree.findall(_tag(DAV, "response"))]


def _parse_response(element: Any) -> _DavEntry:
    href = element.findtext(_tag(DAV, "href"))
    if not href:
        raise ProtocolError("multistatus response without href")
    entry = _DavEntry(href=_path(href.strip()), status=_status_code(element))
    for propstat in element.findall(_tag(DAV, "propstat")):
        if _status_code(propstat) not in (None, 200):
            continue
        for prop in propstat.findall(_tag(DAV, "prop")):
            for child in prop:
                entry.props[child.tag] = child
    return entry


def _status_code(element: Any) -> int | None:
    status = element.findtext(_tag(DAV, "status"))
    if not status:
        return None
    parts = status.split()
    try:
        return int(parts[1])
    except (IndexError, ValueError) as exc:
        raise ProtocolError(f"unreadable DAV status line {status!r}") from exc


def _child_href(entry: _DavEntry, namespace: str, name: str) -> str | None:
    element = entry.props.get(_tag(namespace, name))
    if element is None:
        return None
    href = element.findtext(_tag(DAV, "href"))
    return href.strip() if href else None


def _is_calendar(entry: _DavEntry) -> bool:
    resourcetype = entry.props.get(_tag(DAV, "resourcetype"))
    return resourcetype is not None and resourcetype.find(_tag(CALDAV, "calendar")) is not None


def _supports_events(entry: _DavEntry) -> bool:
    component_set = entry.props.get(_tag(CALDAV, "supported-calendar-component-set"))
    if component_set is None:
        return True  # RFC 4791 §5.2.3: absent means every component type
    names = {comp.get("name", "").upper() for comp in component_set}
    return "VEVENT" in names


def _read_only(entry: _DavEntry) -> bool:
    privileges = entry.props.get(_tag(DAV, "current-user-privilege-set"))
    if privileges is None:
        return False
    granted = {child.tag for privilege in privileges for child in privilege}
    writable = {_tag(DAV, "all"), _tag(DAV, "write"), _tag(DAV, "write-content")}
    return not granted & writable


def _zone_from_calendar_timezone(text: str | None) -> str | None:
    """The IANA name declared by CALDAV:calendar-timezone (TZID, X-LIC-LOCATION, X-WR-TIMEZONE)."""
    if not text:
        return None
    try:
        calendar = icalendar.Calendar.from_ical(text)
    except ValueError:
        log.warning("ignoring unparseable calendar-timezone property")
        return None
    candidates = [str(calendar.get("X-WR-TIMEZONE", ""))]
    for vtimezone in calendar.walk("VTIMEZONE"):
        candidates += [str(vtimezone.get("TZID", "")), str(vtimezone.get("X-LIC-LOCATION", ""))]
    return next((name for name in candidates if _is_iana(name)), None)


def _is_iana(name: str) -> bool:
    if not name:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


# ---------------------------------------------------------------------- helpers


def _path(href: str) -> str:
    """Hrefs compare as absolute paths: servers mix full URLs and paths."""
    return urlsplit(href).path or href


def _same_path(href: str, path: str) -> bool:
    return href.rstrip("/") == path.rstrip("/")


def _ical_utc(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: pass aware datetimes")
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
