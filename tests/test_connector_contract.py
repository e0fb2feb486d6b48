"""One contract every connector passes (vdirsyncer style).

`ConnectorContract` holds the tests. They speak a format-neutral language: a `SampleEvent` is
what another client stores in the calendar, a `SeenEvent` is what the test reads back from a
pulled `RemoteObject` (a reader per `RemoteObject.kind`, so iCalendar and Google JSON alike).
Each backend's subclass only supplies the `env` fixture: a connector, a fresh empty calendar,
and functions that store / delete a raw event in the backend's own format behind the
connector's back. What a backend cannot do is a row in `CAPABILITIES`, never an `if` on its
name inside a test.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import icalendar
import pytest

from connectors.base import (
    Changes,
    Connector,
    EventRef,
    EventSpec,
    PreconditionFailed,
    RemoteObject,
    StaleSyncState,
)
from connectors.caldav import CalDAVConnector
from connectors.google import GoogleConnector, RetryPolicy
from connectors.memory import MemoryConnector
from syncd.identity import BOOKING_PROPERTY, GOOGLE_PRIVATE_KEY
from tests.fake_google import FakeGoogle
from tests.servers import (
    DavServer,
    delete_object,
    make_calendar,
    put_object,
    radicale_server,
    xandikos_server,
)

_names = itertools.count(1)

BOOKING_KEY = "0123456789abcdef0123456789abcdef"
BOOKING_UID = f"syncd-{BOOKING_KEY}@syncd"


# ------------------------------------------------------------ capabilities


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do; a test needing a missing capability is skipped, with the reason."""

    expire_states: bool = False  # the harness can make every issued sync state stale
    uid_from_spec: bool = True  # a written event's UID is EventSpec.uid (Google assigns iCalUID)
    organizer_from_spec: bool = True  # ... its organizer is EventSpec's (Google: the owner)
    rsvp_flag: bool = True  # attendees carry an RSVP request (Google has no such flag)


CAPABILITIES: Mapping[str, Capabilities] = {
    "memory": Capabilities(expire_states=True),
    "radicale": Capabilities(),
    "xandikos": Capabilities(),
    "google": Capabilities(
        expire_states=True, uid_from_spec=False, organizer_from_spec=False, rsvp_flag=False
    ),
}


def require(env: ContractEnv, capability: str) -> None:
    if not getattr(env.capabilities, capability):
        pytest.skip(f"{env.backend} lacks capability {capability}")


# ------------------------------------------------------------ neutral events


@dataclass(frozen=True)
class SampleEvent:
    """An event as another client (the mentor's own app) would store it."""

    uid: str
    start: datetime = datetime(2030, 3, 4, 9, tzinfo=UTC)
    end: datetime = datetime(2030, 3, 4, 10, tzinfo=UTC)
    summary: str = "Meeting"
    weekly_count: int | None = None  # FREQ=WEEKLY;COUNT=n
    transparent: bool = False

    def occurrences(self) -> list[tuple[datetime, datetime]]:
        weeks = range(self.weekly_count or 1)
        return [(self.start + timedelta(weeks=k), self.end + timedelta(weeks=k)) for k in weeks]


@dataclass(frozen=True)
class SeenAttendee:
    email: str
    name: str | None
    partstat: str  # iCalendar spelling: NEEDS-ACTION, ACCEPTED, ...
    rsvp: bool | None  # None: the format has no such flag


@dataclass(frozen=True)
class SeenEvent:
    """What a pulled object says, whatever its format."""

    uid: str
    summary: str
    start: datetime
    end: datetime
    sequence: int
    booking_id: str | None
    organizer: str | None
    attendees: tuple[SeenAttendee, ...] = field(default_factory=tuple)


def _ical_stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


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


def sample_to_ics(sample: SampleEvent) -> str:
    extra = []
    if sample.weekly_count:
        extra.append(f"RRULE:FREQ=WEEKLY;COUNT={sample.weekly_count}")
    if sample.transparent:
        extra.append("TRANSP:TRANSPARENT")
    start, end = _ical_stamp(sample.start), _ical_stamp(sample.end)
    return ics_event(sample.uid, start, end, *extra, summary=sample.summary)


def _google_time(moment: datetime) -> dict[str, str]:
    return {"dateTime": moment.astimezone(UTC).isoformat().replace("+00:00", "Z")}


def sample_to_google(event_id: str, sample: SampleEvent) -> list[dict[str, Any]]:
    """Google's view of the sample: what events.list(singleEvents=true) and freeBusy see.

    The fake server does not expand RRULEs, so a recurring sample is stored as its instances,
    named and linked as Google names them (`<id>_<start>` with `recurringEventId`).
    """
    base: dict[str, Any] = {"iCalUID": sample.uid, "summary": sample.summary}
    if sample.transparent:
        base["transparency"] = "transparent"
    if not sample.weekly_count:
        return [{**base, "id": event_id, **_google_span(sample.start, sample.end)}]
    return [
        {
            **base,
            "id": f"{event_id}_{_ical_stamp(start)}",
            "recurringEventId": event_id,
            "originalStartTime": _google_time(start),
            **_google_span(start, end),
        }
        for start, end in sample.occurrences()
    ]


def _google_span(start: datetime, end: datetime) -> dict[str, Any]:
    return {"start": _google_time(start), "end": _google_time(end)}


def read_ical(obj: RemoteObject) -> SeenEvent:
    calendar: Any = icalendar.Calendar.from_ical(str(obj.data))
    event = calendar.walk("VEVENT")[0]
    organizer = event.get("ORGANIZER")
    return SeenEvent(
        uid=str(event["UID"]),
        summary=str(event.get("SUMMARY", "")),
        start=event["DTSTART"].dt,
        end=event["DTEND"].dt,
        sequence=int(event.get("SEQUENCE", 0)),
        booking_id=str(event[BOOKING_PROPERTY]) if BOOKING_PROPERTY in event else None,
        organizer=_strip_mailto(str(organizer)) if organizer else None,
        attendees=tuple(_ical_attendee(a) for a in _as_list(event.get("ATTENDEE"))),
    )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _strip_mailto(address: str) -> str:
    return address[len("mailto:") :] if address.lower().startswith("mailto:") else address


def _ical_attendee(address: Any) -> SeenAttendee:
    params = address.params
    rsvp = params.get("RSVP")
    return SeenAttendee(
        email=_strip_mailto(str(address)).lower(),
        name=params.get("CN"),
        partstat=params.get("PARTSTAT", "NEEDS-ACTION"),
        rsvp=None if rsvp is None else rsvp.upper() == "TRUE",
    )


_GOOGLE_PARTSTAT = {
    "needsAction": "NEEDS-ACTION",
    "accepted": "ACCEPTED",
    "declined": "DECLINED",
    "tentative": "TENTATIVE",
}


def read_google(obj: RemoteObject) -> SeenEvent:
    event: dict[str, Any] = obj.data
    private = event.get("extendedProperties", {}).get("private", {})
    return SeenEvent(
        uid=str(event.get("iCalUID", "")),
        summary=str(event.get("summary", "")),
        start=_parse_google_time(event["start"]),
        end=_parse_google_time(event["end"]),
        sequence=int(event.get("sequence", 0)),
        booking_id=private.get(GOOGLE_PRIVATE_KEY),
        organizer=event.get("organizer", {}).get("email"),
        attendees=tuple(_google_attendee(a) for a in event.get("attendees", [])),
    )


def _parse_google_time(when: Mapping[str, str]) -> datetime:
    return datetime.fromisoformat(when["dateTime"].replace("Z", "+00:00"))


def _google_attendee(attendee: Mapping[str, Any]) -> SeenAttendee:
    # A new attendee's responseStatus is needsAction (Google fills it in when absent).
    status = str(attendee.get("responseStatus", "needsAction"))
    return SeenAttendee(
        email=str(attendee["email"]).lower(),
        name=attendee.get("displayName"),
        partstat=_GOOGLE_PARTSTAT.get(status, status.upper()),
        rsvp=None,
    )


READERS: Mapping[str, Callable[[RemoteObject], SeenEvent]] = {
    "ical": read_ical,
    "google": read_google,
}


def seen(obj: RemoteObject) -> SeenEvent:
    return READERS[obj.kind](obj)


def uids(changes: Changes) -> set[str]:
    return {seen(obj).uid for obj in changes.upserts}


def booking_event(key: str = BOOKING_KEY, **changes: object) -> EventSpec:
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


# ------------------------------------------------------------ the contract


@dataclass
class ContractEnv:
    backend: str  # a key of CAPABILITIES
    connector: Connector
    calendar: str
    store: Callable[[str, SampleEvent], str]  # (name, event) -> ref, as another client would
    remove: Callable[[str], None]  # ref -> None, deleted as another client would
    rejected_state: str  # well-formed, but a state the provider refuses (unknown/expired)
    expire_states: Callable[[], None] | None = None  # makes every issued state stale

    @property
    def capabilities(self) -> Capabilities:
        return CAPABILITIES[self.backend]


class ConnectorContract:
    """The tests; subclasses provide the `env` fixture."""

    def test_list_calendars_includes_the_calendar(self, env: ContractEnv) -> None:
        remote_ids = [info.remote_id for info in env.connector.list_calendars()]
        assert env.calendar in remote_ids

    def test_pull_from_scratch_sees_every_object(self, env: ContractEnv) -> None:
        env.store("one", SampleEvent("uid-one"))
        env.store("two", SampleEvent("uid-two"))
        changes = env.connector.pull(env.calendar, None)
        assert changes.full is True
        assert uids(changes) == {"uid-one", "uid-two"}
        assert list(changes.deleted) == []
        assert changes.state

    def test_pulled_object_reads_back_as_stored(self, env: ContractEnv) -> None:
        env.store("one", SampleEvent("uid-one", summary="Standup"))
        [obj] = env.connector.pull(env.calendar, None).upserts
        event = seen(obj)
        assert (event.uid, event.summary) == ("uid-one", "Standup")
        assert (event.start, event.end) == (SampleEvent.start, SampleEvent.end)
        assert obj.etag

    def test_empty_calendar_pull(self, env: ContractEnv) -> None:
        changes = env.connector.pull(env.calendar, None)
        assert list(changes.upserts) == []
        again = env.connector.pull(env.calendar, changes.state)
        assert list(again.upserts) == [] and list(again.deleted) == []

    def test_incremental_pull_sees_only_an_added_object(self, env: ContractEnv) -> None:
        env.store("old", SampleEvent("uid-old"))
        first = env.connector.pull(env.calendar, None)
        env.store("new", SampleEvent("uid-new"))
        second = env.connector.pull(env.calendar, first.state)
        assert second.full is False
        assert uids(second) == {"uid-new"}
        assert list(second.deleted) == []

    def test_incremental_pull_sees_a_modified_object(self, env: ContractEnv) -> None:
        env.store("keep", SampleEvent("uid-keep"))
        env.store("edit", SampleEvent("uid-edit"))
        first = env.connector.pull(env.calendar, None)
        env.store("edit", SampleEvent("uid-edit", summary="Moved"))
        second = env.connector.pull(env.calendar, first.state)
        assert uids(second) == {"uid-edit"}
        assert seen(second.upserts[0]).summary == "Moved"

    def test_incremental_pull_sees_a_deletion(self, env: ContractEnv) -> None:
        env.store("keep", SampleEvent("uid-keep"))
        doomed = env.store("doomed", SampleEvent("uid-doomed"))
        first = env.connector.pull(env.calendar, None)
        env.remove(doomed)
        second = env.connector.pull(env.calendar, first.state)
        assert list(second.upserts) == []
        assert list(second.deleted) == [doomed]

    def test_refs_from_pull_match_refs_of_deletions(self, env: ContractEnv) -> None:
        ref = env.store("x", SampleEvent("uid-x"))
        first = env.connector.pull(env.calendar, None)
        assert [item.ref for item in first.upserts] == [ref]

    def test_unchanged_calendar_pulls_nothing(self, env: ContractEnv) -> None:
        env.store("a", SampleEvent("uid-a"))
        first = env.connector.pull(env.calendar, None)
        second = env.connector.pull(env.calendar, first.state)
        assert list(second.upserts) == [] and list(second.deleted) == []

    def test_garbage_state_is_stale(self, env: ContractEnv) -> None:
        with pytest.raises(StaleSyncState):
            env.connector.pull(env.calendar, "not-a-state-this-connector-issued")

    def test_state_the_provider_rejects_is_stale(self, env: ContractEnv) -> None:
        env.store("a", SampleEvent("uid-a"))
        with pytest.raises(StaleSyncState):
            env.connector.pull(env.calendar, env.rejected_state)

    def test_expired_state_is_stale_and_full_pull_recovers(self, env: ContractEnv) -> None:
        require(env, "expire_states")
        assert env.expire_states is not None
        env.store("a", SampleEvent("uid-a"))
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
        assert [seen(obj).booking_id for obj in changes.upserts] == [BOOKING_KEY]

    def test_written_event_has_the_booking_uid(self, env: ContractEnv) -> None:
        require(env, "uid_from_spec")
        env.connector.put_event(env.calendar, booking_event())
        assert uids(env.connector.pull(env.calendar, None)) == {BOOKING_UID}

    def test_written_event_carries_the_booking(self, env: ContractEnv) -> None:
        env.connector.put_event(env.calendar, booking_event())
        event = seen(env.connector.pull(env.calendar, None).upserts[0])
        assert event.booking_id == BOOKING_KEY
        assert event.summary == "Mentoring: Ada"
        assert event.start == datetime(2030, 3, 5, 14, tzinfo=UTC)
        assert event.end == datetime(2030, 3, 5, 15, tzinfo=UTC)
        [attendee] = event.attendees
        assert (attendee.email, attendee.name) == ("ada@example.org", "Ada")
        assert attendee.partstat == "NEEDS-ACTION"

    def test_written_event_has_the_organizer_and_asks_to_rsvp(self, env: ContractEnv) -> None:
        require(env, "organizer_from_spec")
        require(env, "rsvp_flag")
        env.connector.put_event(env.calendar, booking_event())
        event = seen(env.connector.pull(env.calendar, None).upserts[0])
        assert event.organizer is not None
        assert event.organizer.lower() == "mentor@example.org"
        assert [attendee.rsvp for attendee in event.attendees] == [True]

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
        event = seen(changes.upserts[0])
        assert (event.summary, event.sequence) == ("Rescheduled", 1)

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
        env.store("weekly", SampleEvent("uid-weekly", weekly_count=10))
        noon = datetime(2030, 3, 12, 12, tzinfo=UTC)
        env.store(
            "free", SampleEvent("uid-free", noon, noon + timedelta(hours=1), transparent=True)
        )
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
    @pytest.fixture
    def env(self) -> ContractEnv:
        connector = MemoryConnector()
        calendar = "memory-calendar"
        connector.add_calendar(calendar)

        def store(name: str, sample: SampleEvent) -> str:
            ref = f"{name}.ics"
            connector.store(calendar, ref, sample_to_ics(sample))
            return ref

        return ContractEnv(
            "memory",
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

    def store(name: str, sample: SampleEvent) -> str:
        url = f"{calendar}{name}.ics"
        put_object(server, url, sample_to_ics(sample))
        return url[len(origin) :]

    try:
        yield ContractEnv(
            server.kind,
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


# ------------------------------------------------------------------- Google

GOOGLE_CLIENT = ("contract-client", "contract-secret")


@pytest.fixture(scope="module")
def fake_google() -> Iterator[FakeGoogle]:
    with FakeGoogle() as google:
        google.register_client(*GOOGLE_CLIENT)
        yield google


def _google_event_id(name: str) -> str:
    # Hex digits are base32hex, the alphabet Google event ids must use.
    return hashlib.sha256(name.encode()).hexdigest()[:26]


class TestGoogle(ConnectorContract):
    @pytest.fixture
    def env(self, fake_google: FakeGoogle) -> Iterator[ContractEnv]:
        calendar = f"contract-{next(_names)}@example.com"
        fake_google.add_calendar(calendar, time_zone="UTC")
        connector = GoogleConnector(
            {
                "client_id": GOOGLE_CLIENT[0],
                "client_secret": GOOGLE_CLIENT[1],
                "refresh_token": fake_google.issue_refresh_token(GOOGLE_CLIENT[0]),
            },
            api_endpoint=fake_google.api_endpoint,
            token_uri=fake_google.token_uri,
            timeout=10,
            retry=RetryPolicy(max_attempts=2, base_delay=0.01),
        )

        def store(name: str, sample: SampleEvent) -> str:
            event_id = _google_event_id(name)
            for event in sample_to_google(event_id, sample):
                fake_google.put_event(calendar, event)
            return event_id

        try:
            yield ContractEnv(
                "google",
                connector,
                calendar,
                store,
                lambda ref: fake_google.remove_event(calendar, ref),
                # Shaped like Google's tokens (urlsafe base64), never issued.
                rejected_state="CPDAlvWDx70CEPDAlvWDx70CGAU=",
                expire_states=fake_google.expire_sync_tokens,
            )
        finally:
            connector.close()
