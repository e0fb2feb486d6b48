"""One contract every connector passes (vdirsyncer style).

`ConnectorContract` holds the tests; each backend's subclass only supplies the `env` fixture
(a connector plus a fresh, empty calendar and a way to change it behind the connector's back)
and capability flags for what the backend cannot do.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import icalendar
import pytest

from connectors.base import (
    Changes,
    Connector,
    EventRef,
    EventSpec,
    PreconditionFailed,
    StaleSyncState,
)
from connectors.caldav import CalDAVConnector
from connectors.memory import MemoryConnector
from tests.servers import (
    DavServer,
    delete_object,
    make_calendar,
    put_object,
    radicale_server,
    xandikos_server,
)

_names = itertools.count(1)


@dataclass
class ContractEnv:
    connector: Connector
    calendar: str
    store: Callable[[str, str], str]  # (name, ics) -> ref, written as another client would
    remove: Callable[[str], None]  # ref -> None, deleted as another client would
    rejected_state: str  # well-formed, but a state the provider refuses (unknown/expired)
    expire_states: Callable[[], None] | None = None  # makes every issued state stale


def ics_event(
    uid: str,
    start: str = "20300304T090000Z",
    end: str = "20300304T100000Z",
    *extra: str,
    summary: str = "Meeting",
) -> str:
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//syncd contract//EN",
        "BEGIN:VEVENT",
        f"UID:{uid}",
        "DTSTAMP:20300101T000000Z",
        f"DTSTART:{start}",
        f"DTEND:{end}",
        f"SUMMARY:{summary}",
        *extra,
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    return "\r\n".join(lines) + "\r\n"


def booking_event(key: str = "0123456789abcdef0123456789abcdef", **changes: object) -> EventSpec:
    values: dict[str, object] = {
        "event_key": key,
        "uid": f"syncd-{key}@syncd",
        "summary": "Mentoring: Ada",
        "start": datetime(2030, 3, 5, 14, tzinfo=UTC),
        "end": datetime(2030, 3, 5, 15, tzinfo=UTC),
        "attendees": (("Ada", "ada@example.org"),),
        "organizer_email": "mentor@example.org",
        "private": {"syncd-booking-id": key},
    }
    values.update(changes)
    return EventSpec(**values)  # type: ignore[arg-type]


def unfold(data: object) -> str:
    """iCalendar text with folded lines joined (RFC 5545 §3.1)."""
    return str(data).replace("\r\n ", "").replace("\n ", "")


def uids(changes: Changes) -> set[str]:
    found = set()
    for item in changes.upserts:
        for line in unfold(item.data).splitlines():
            if line.startswith("UID:"):
                found.add(line[len("UID:") :].strip())
    return found


class ConnectorContract:
    """The tests; subclasses provide `env` and may switch capabilities off."""

    can_expire_states = False

    def test_list_calendars_includes_the_calendar(self, env: ContractEnv) -> None:
        remote_ids = [info.remote_id for info in env.connector.list_calendars()]
        assert env.calendar in remote_ids

    def test_pull_from_scratch_sees_every_object(self, env: ContractEnv) -> None:
        env.store("one", ics_event("uid-one"))
        env.store("two", ics_event("uid-two"))
        changes = env.connector.pull(env.calendar, None)
        assert changes.full is True
        assert uids(changes) == {"uid-one", "uid-two"}
        assert list(changes.deleted) == []
        assert changes.state

    def test_empty_calendar_pull(self, env: ContractEnv) -> None:
        changes = env.connector.pull(env.calendar, None)
        assert list(changes.upserts) == []
        again = env.connector.pull(env.calendar, changes.state)
        assert list(again.upserts) == [] and list(again.deleted) == []

    def test_incremental_pull_sees_only_an_added_object(self, env: ContractEnv) -> None:
        env.store("old", ics_event("uid-old"))
        first = env.connector.pull(env.calendar, None)
        env.store("new", ics_event("uid-new"))
        second = env.connector.pull(env.calendar, first.state)
        assert second.full is False
        assert uids(second) == {"uid-new"}
        assert list(second.deleted) == []

    def test_incremental_pull_sees_a_modified_object(self, env: ContractEnv) -> None:
        env.store("keep", ics_event("uid-keep"))
        env.store("edit", ics_event("uid-edit"))
        first = env.connector.pull(env.calendar, None)
        env.store("edit", ics_event("uid-edit", summary="Moved"))
        second = env.connector.pull(env.calendar, first.state)
        assert uids(second) == {"uid-edit"}
        assert "SUMMARY:Moved" in unfold(second.upserts[0].data)

    def test_incremental_pull_sees_a_deletion(self, env: ContractEnv) -> None:
        env.store("keep", ics_event("uid-keep"))
        doomed = env.store("doomed", ics_event("uid-doomed"))
        first = env.connector.pull(env.calendar, None)
        env.remove(doomed)
        second = env.connector.pull(env.calendar, first.state)
        assert list(second.upserts) == []
        assert list(second.deleted) == [doomed]

    def test_refs_from_pull_match_refs_of_deletions(self, env: ContractEnv) -> None:
        ref = env.store("x", ics_event("uid-x"))
        first = env.connector.pull(env.calendar, None)
        assert [item.ref for item in first.upserts] == [ref]

    def test_unchanged_calendar_pulls_nothing(self, env: ContractEnv) -> None:
        env.store("a", ics_event("uid-a"))
        first = env.connector.pull(env.calendar, None)
        second = env.connector.pull(env.calendar, first.state)
        assert list(second.upserts) == [] and list(second.deleted) == []

    def test_garbage_state_is_stale(self, env: ContractEnv) -> None:
        with pytest.raises(StaleSyncState):
            env.connector.pull(env.calendar, "not-a-state-this-connector-issued")

    def test_state_the_provider_rejects_is_stale(self, env: ContractEnv) -> None:
        env.store("a", ics_event("uid-a"))
        with pytest.raises(StaleSyncState):
            env.connector.pull(env.calendar, env.rejected_state)

    def test_expired_state_is_stale_and_full_pull_recovers(self, env: ContractEnv) -> None:
        if not self.can_expire_states or env.expire_states is None:
            pytest.skip("backend cannot expire sync states on demand")
        env.store("a", ics_event("uid-a"))
        first = env.connector.pull(env.calendar, None)
        env.expire_states()
        with pytest.raises(StaleSyncState):
            env.connector.pull(env.calendar, first.state)
        assert uids(env.connector.pull(env.calendar, None)) == {"uid-a"}

    def test_put_event_twice_creates_exactly_one_event(self, env: ContractEnv) -> None:
        first = env.connector.put_event(env.calendar, booking_event())
        second = env.connector.put_event(env.calendar, booking_event())
        assert first.ref == second.ref
        changes = env.connector.pull(env.calendar, None)
        assert len(changes.upserts) == 1
        assert uids(changes) == {"syncd-0123456789abcdef0123456789abcdef@syncd"}

    def test_written_event_carries_the_booking(self, env: ContractEnv) -> None:
        env.connector.put_event(env.calendar, booking_event())
        data = str(env.connector.pull(env.calendar, None).upserts[0].data)
        event: Any = icalendar.Calendar.from_ical(data).walk("VEVENT")[0]
        assert str(event["X-SYNCD-BOOKING-ID"]) == "0123456789abcdef0123456789abcdef"
        assert event["DTSTART"].dt == datetime(2030, 3, 5, 14, tzinfo=UTC)
        assert event["DTEND"].dt == datetime(2030, 3, 5, 15, tzinfo=UTC)
        assert str(event["ORGANIZER"]).lower() == "mailto:mentor@example.org"
        attendee = event["ATTENDEE"]
        assert str(attendee).lower() == "mailto:ada@example.org"
        assert attendee.params["CN"] == "Ada"
        assert attendee.params["PARTSTAT"] == "NEEDS-ACTION"
        assert attendee.params["RSVP"] == "TRUE"

    def test_update_with_if_match_replaces_the_event(self, env: ContractEnv) -> None:
        created = env.connector.put_event(env.calendar, booking_event())
        assert created.etag is not None
        updated = env.connector.put_event(
            env.calendar, booking_event(summary="Rescheduled", sequence=1), created
        )
        assert updated.ref == created.ref
        assert updated.etag != created.etag
        changes = env.connector.pull(env.calendar, None)
        assert len(changes.upserts) == 1
        assert "SUMMARY:Rescheduled" in unfold(changes.upserts[0].data)
        assert "SEQUENCE:1" in unfold(changes.upserts[0].data)

    def test_update_with_an_outdated_etag_fails(self, env: ContractEnv) -> None:
        created = env.connector.put_event(env.calendar, booking_event())
        env.connector.put_event(env.calendar, booking_event(summary="Theirs"), created)
        with pytest.raises(PreconditionFailed):
            env.connector.put_event(env.calendar, booking_event(summary="Ours"), created)

    def test_delete_and_delete_again(self, env: ContractEnv) -> None:
        created = env.connector.put_event(env.calendar, booking_event())
        env.connector.delete_event(env.calendar, created)
        env.connector.delete_event(env.calendar, created)
        assert list(env.connector.pull(env.calendar, None).upserts) == []

    def test_delete_without_etag(self, env: ContractEnv) -> None:
        created = env.connector.put_event(env.calendar, booking_event())
        env.connector.delete_event(env.calendar, EventRef(created.ref))
        assert list(env.connector.pull(env.calendar, None).upserts) == []

    def test_busy_sees_recurring_occurrences_and_ignores_transparent(
        self, env: ContractEnv
    ) -> None:
        weekly = ics_event(
            "uid-weekly", "20300304T090000Z", "20300304T100000Z", "RRULE:FREQ=WEEKLY;COUNT=10"
        )
        free = ics_event("uid-free", "20300312T120000Z", "20300312T130000Z", "TRANSP:TRANSPARENT")
        env.store("weekly", weekly)
        env.store("free", free)
        start = datetime(2030, 3, 10, tzinfo=UTC)
        end = datetime(2030, 3, 26, tzinfo=UTC)
        periods = env.connector.busy([env.calendar], start, end)
        # 4 March + k weeks: the 11th, 18th and 25th fall inside [10 March, 26 March).
        assert [(p.start, p.end) for p in periods] == [
            (datetime(2030, 3, day, 9, tzinfo=UTC), datetime(2030, 3, day, 10, tzinfo=UTC))
            for day in (11, 18, 25)
        ]


# ------------------------------------------------------------------- backends


class TestMemoryConnector(ConnectorContract):
    can_expire_states = True

    @pytest.fixture
    def env(self) -> ContractEnv:
        connector = MemoryConnector()
        calendar = "memory-calendar"
        connector.add_calendar(calendar)

        def store(name: str, ics: str) -> str:
            ref = f"{name}.ics"
            connector.store(calendar, ref, ics)
            return ref

        return ContractEnv(
            connector,
            calendar,
            store,
            lambda ref: connector.remove(calendar, ref),
            rejected_state="1:999999",  # a change counter the account never reached
            expire_states=connector.expire_states,
        )


# Tokens shaped like each server's own, but never issued by it.
REJECTED_TOKENS = {
    "radicale": "sync:http://radicale.org/ns/sync/" + "0" * 64,
    "xandikos": "sync:" + "0" * 40,
}


def _caldav_env(server: DavServer) -> Iterator[ContractEnv]:
    calendar = make_calendar(server, f"contract-{next(_names)}")
    username, password = server.auth or (None, None)
    connector = CalDAVConnector(server.principal_url, username, password, timeout=10)
    origin = server.url.rstrip("/")

    def store(name: str, ics: str) -> str:
        url = f"{calendar}{name}.ics"
        put_object(server, url, ics)
        return url[len(origin) :]

    try:
        yield ContractEnv(
            connector,
            calendar,
            store,
            lambda ref: delete_object(server, origin + ref),
            rejected_state=REJECTED_TOKENS[server.kind],
        )
    finally:
        connector.close()


@pytest.fixture(scope="module")
def radicale() -> Iterator[DavServer]:
    with radicale_server() as server:
        yield server


@pytest.fixture(scope="module")
def xandikos() -> Iterator[DavServer]:
    with xandikos_server() as server:
        yield server


class TestRadicale(ConnectorContract):
    @pytest.fixture
    def env(self, radicale: DavServer) -> Iterator[ContractEnv]:
        yield from _caldav_env(radicale)


class TestXandikos(ConnectorContract):
    @pytest.fixture
    def env(self, xandikos: DavServer) -> Iterator[ContractEnv]:
        yield from _caldav_env(xandikos)
