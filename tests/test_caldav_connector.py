"""CalDAV specifics beyond the contract: request economy, fallback sync, auth, failures."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import icalendar
import pytest

from connectors.base import AuthError, EventSpec, StaleSyncState, TransientError
from connectors.caldav import CalDAVConnector, event_to_ical
from syncd.busy import MalformedCalendarData, busy_from_ical
from tests.servers import (
    DavServer,
    delete_object,
    make_calendar,
    put_object,
    radicale_server,
    refused_url,
    silent_server,
    xandikos_server,
)
from tests.test_connector_contract import ics_event

_counter = iter(range(1, 10_000))


@pytest.fixture(scope="module")
def radicale() -> Iterator[DavServer]:
    with radicale_server() as server:
        yield server


@pytest.fixture(scope="module")
def xandikos() -> Iterator[DavServer]:
    with xandikos_server() as server:
        yield server


@pytest.fixture(params=["radicale", "xandikos"])
def server(request: pytest.FixtureRequest) -> DavServer:
    found: DavServer = request.getfixturevalue(request.param)
    return found


def connect(server: DavServer, url: str | None = None, **options: Any) -> CalDAVConnector:
    username, password = server.auth or (None, None)
    return CalDAVConnector(url or server.principal_url, username, password, **options)


class RequestLog:
    """Records every HTTP request the connector's session sends (auth retries included)."""

    def __init__(self, connector: CalDAVConnector) -> None:
        self.requests: list[tuple[str, str]] = []
        session = connector._client.session
        original = session.request

        def recording(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            body = kwargs.get("data") or b""
            text = body.decode("utf-8") if isinstance(body, bytes) else str(body)
            self.requests.append((method, text))
            return original(method, url, *args, **kwargs)

        setattr(session, "request", recording)  # noqa: B010  # mypy forbids assigning methods

    def clear(self) -> None:
        self.requests.clear()


def seed(server: DavServer, calendar: str, count: int) -> None:
    for index in range(count):
        put_object(server, f"{calendar}seed-{index}.ics", ics_event(f"seed-{index}"))


def test_incremental_pull_costs_two_requests_sync_collection_then_multiget(
    server: DavServer,
) -> None:
    calendar = make_calendar(server, f"economy-{next(_counter)}")
    seed(server, calendar, 5)
    connector = connect(server)
    log = RequestLog(connector)
    state = connector.pull(calendar, None).state
    put_object(server, f"{calendar}seed-1.ics", ics_event("seed-1", summary="Edited"))
    put_object(server, f"{calendar}added.ics", ics_event("added"))
    delete_object(server, f"{calendar}seed-2.ics")
    log.clear()

    changes = connector.pull(calendar, state)

    assert [method for method, _ in log.requests] == ["REPORT", "REPORT"]
    assert "sync-collection" in log.requests[0][1]
    assert "calendar-multiget" in log.requests[1][1]
    assert sorted(item.ref.rsplit("/", 1)[-1] for item in changes.upserts) == [
        "added.ics",
        "seed-1.ics",
    ]
    assert [ref.rsplit("/", 1)[-1] for ref in changes.deleted] == ["seed-2.ics"]
    connector.close()


def test_full_pull_fetches_objects_with_multiget_not_one_get_each(server: DavServer) -> None:
    calendar = make_calendar(server, f"full-{next(_counter)}")
    seed(server, calendar, 6)
    connector = connect(server)
    log = RequestLog(connector)
    changes = connector.pull(calendar, None)
    methods = [method for method, _ in log.requests]
    assert len(changes.upserts) == 6
    assert "GET" not in methods
    assert sum("calendar-multiget" in body for _, body in log.requests) == 1
    connector.close()


def test_ctag_fallback_pull_add_modify_delete(server: DavServer) -> None:
    calendar = make_calendar(server, f"ctag-{next(_counter)}")
    seed(server, calendar, 3)
    connector = connect(server, use_sync_collection=False)
    log = RequestLog(connector)
    first = connector.pull(calendar, None)
    assert first.full is True and len(first.upserts) == 3
    assert first.state is not None and first.state.startswith("ctag:")

    log.clear()
    unchanged = connector.pull(calendar, first.state)
    assert list(unchanged.upserts) == [] and list(unchanged.deleted) == []
    assert len(log.requests) == 1  # the ctag alone answers "nothing changed"

    put_object(server, f"{calendar}seed-0.ics", ics_event("seed-0", summary="Edited"))
    put_object(server, f"{calendar}added.ics", ics_event("added"))
    delete_object(server, f"{calendar}seed-2.ics")
    log.clear()
    changed = connector.pull(calendar, unchanged.state)
    assert sorted(item.ref.rsplit("/", 1)[-1] for item in changed.upserts) == [
        "added.ics",
        "seed-0.ics",
    ]
    assert [ref.rsplit("/", 1)[-1] for ref in changed.deleted] == ["seed-2.ics"]
    assert "calendar-multiget" in log.requests[-1][1]
    assert "GET" not in [method for method, _ in log.requests]
    connector.close()


def test_states_of_the_other_strategy_are_stale(radicale: DavServer) -> None:
    calendar = make_calendar(radicale, f"mixed-{next(_counter)}")
    with (
        closing(connect(radicale)) as sync,
        closing(connect(radicale, use_sync_collection=False)) as fallback,
    ):
        sync_state = sync.pull(calendar, None).state
        ctag_state = fallback.pull(calendar, None).state
        for connector, state in ((fallback, sync_state), (sync, ctag_state)):
            with pytest.raises(StaleSyncState):
                connector.pull(calendar, state)
        with pytest.raises(StaleSyncState):
            fallback.pull(calendar, "ctag:{not json")


def test_calendar_url_lists_just_that_calendar_with_its_timezone(server: DavServer) -> None:
    calendar = make_calendar(server, f"zoned-{next(_counter)}", timezone="America/New_York")
    [info] = connect(server, url=calendar).list_calendars()
    assert info.remote_id == calendar
    assert info.timezone == "America/New_York"
    assert info.read_only is False


def test_full_pull_reports_the_calendar_timezone(server: DavServer) -> None:
    calendar = make_calendar(server, f"tz-{next(_counter)}", timezone="Asia/Tokyo")
    assert connect(server).pull(calendar, None).calendar_timezone == "Asia/Tokyo"


def test_busy_reads_floating_times_in_the_calendar_zone(server: DavServer) -> None:
    calendar = make_calendar(server, f"floating-{next(_counter)}", timezone="Asia/Tokyo")
    put_object(server, f"{calendar}f.ics", ics_event("f", "20300305T090000", "20300305T100000"))
    connector = connect(server)
    connector.list_calendars()  # learns each calendar's zone
    start = datetime(2030, 3, 4, tzinfo=UTC)
    periods = connector.busy([calendar], start, start + timedelta(days=3))
    # 09:00 in Tokyo (UTC+9) is 00:00 UTC.
    assert [(p.start, p.end) for p in periods] == [
        (datetime(2030, 3, 5, 0, tzinfo=UTC), datetime(2030, 3, 5, 1, tzinfo=UTC))
    ]


def test_malformed_object_is_pulled_and_reported_by_busy_rules(xandikos: DavServer) -> None:
    # Radicale refuses to store invalid iCalendar (HTTP 400); Xandikos stores it as given.
    calendar = make_calendar(xandikos, f"broken-{next(_counter)}")
    broken = ics_event("broken", "2030030xT100000Z", "20300305T110000Z")
    put_object(xandikos, f"{calendar}broken.ics", broken)
    put_object(xandikos, f"{calendar}fine.ics", ics_event("fine"))
    changes = connect(xandikos).pull(calendar, None)
    by_name = {item.ref.rsplit("/", 1)[-1]: item for item in changes.upserts}
    assert set(by_name) == {"broken.ics", "fine.ics"}
    window = {
        "window_start": datetime(2030, 3, 1, tzinfo=UTC),
        "window_end": datetime(2030, 4, 1, tzinfo=UTC),
        "default_timezone": "UTC",
    }
    with pytest.raises(MalformedCalendarData):
        busy_from_ical(str(by_name["broken.ics"].data), **window)  # type: ignore[arg-type]
    assert len(busy_from_ical(str(by_name["fine.ics"].data), **window)) == 1  # type: ignore[arg-type]


# ------------------------------------------------------------------ auth, failures


@pytest.fixture(scope="module")
def radicale_with_password() -> Iterator[DavServer]:
    with radicale_server(auth=("mentor", "correct horse")) as server:
        yield server


def test_discovery_from_the_server_root_with_basic_auth(radicale_with_password: DavServer) -> None:
    calendar = make_calendar(radicale_with_password, "private")
    connector = CalDAVConnector(radicale_with_password.url, "mentor", "correct horse")
    assert calendar in [info.remote_id for info in connector.list_calendars()]


def test_wrong_password_is_an_auth_error(radicale_with_password: DavServer) -> None:
    connector = CalDAVConnector(radicale_with_password.principal_url, "mentor", "wrong")
    with pytest.raises(AuthError) as raised:
        connector.list_calendars()
    assert "wrong" not in str(raised.value)


def test_server_down_is_transient_and_fast() -> None:
    connector = CalDAVConnector(refused_url(), "u", "p", timeout=5)
    began = time.monotonic()
    with pytest.raises(TransientError):
        connector.list_calendars()
    assert time.monotonic() - began < 3


def test_slow_server_times_out_as_transient() -> None:
    with silent_server() as url:
        connector = CalDAVConnector(url, "u", "p", timeout=0.5)
        began = time.monotonic()
        with pytest.raises(TransientError):
            connector.pull(url + "calendar/", None)
        elapsed = time.monotonic() - began
        connector.close()
    assert 0.4 < elapsed < 5


# ---------------------------------------------------------------- event_to_ical


def _spec(**changes: Any) -> EventSpec:
    values: dict[str, Any] = {
        "event_key": "k",
        "uid": "syncd-k@syncd",
        "summary": "Session",
        "start": datetime(2030, 3, 5, 10, tzinfo=timezone(timedelta(hours=2))),
        "end": datetime(2030, 3, 5, 11, tzinfo=timezone(timedelta(hours=2))),
    }
    values.update(changes)
    return EventSpec(**values)


def test_event_to_ical_writes_utc_times_and_required_properties() -> None:
    event: Any = icalendar.Calendar.from_ical(event_to_ical(_spec())).walk("VEVENT")[0]
    assert event["DTSTART"].dt == datetime(2030, 3, 5, 8, tzinfo=UTC)
    assert event["DTEND"].dt == datetime(2030, 3, 5, 9, tzinfo=UTC)
    assert str(event["UID"]) == "syncd-k@syncd"
    assert str(event["STATUS"]) == "CONFIRMED"
    assert int(event["SEQUENCE"]) == 0
    assert "DTSTAMP" in event
    assert "X-SYNCD-BOOKING-ID" not in event
    assert "ORGANIZER" not in event


def test_event_to_ical_cancelled_with_sequence_and_location() -> None:
    text = event_to_ical(_spec(status="CANCELLED", sequence=3, location="Room 1"))
    event: Any = icalendar.Calendar.from_ical(text).walk("VEVENT")[0]
    assert str(event["STATUS"]) == "CANCELLED"
    assert int(event["SEQUENCE"]) == 3
    assert str(event["LOCATION"]) == "Room 1"


def test_event_to_ical_refuses_naive_times() -> None:
    with pytest.raises(ValueError, match="naive"):
        event_to_ical(_spec(start=datetime(2030, 3, 5, 10)))
