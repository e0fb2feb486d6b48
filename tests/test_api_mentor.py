"""The mentor endpoints and page: hours, overrides, calendar choices, CalDAV connect (against a
real Radicale), the words for sync states, and who may do what."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from syncd.api import create_app
from syncd.api.coalesce import SingleFlight
from syncd.api.settings import ApiSettings
from syncd.api.words import SyncFacts, ago, last_sync_words, problem_words
from syncd.config import Config
from syncd.secrets import SecretBox
from syncd.store import calendars as calendar_store
from syncd.store.db import Database
from syncd.store.models import Calendar, CalendarAccount
from tests.servers import DavServer, make_calendar, radicale_server
from tests.test_api_helpers import KEYS, NOW, SERVICE, bearer, link_token, seed, settings

KEY_MATERIAL = "mentor-page-test-key-0123456789abcdefghij"
PASSWORD = "app-password-9f8e7d"
ANA = "/v1/mentors/ana"


@pytest.fixture
def seeded(db: Database) -> Database:
    seed(db)
    return db


def make_client(db: Database, **changes: Any) -> TestClient:
    config = Config(sections={"security": {"secret_key": KEY_MATERIAL}})
    chosen: ApiSettings = dataclasses.replace(settings(), config=config, **changes)
    return TestClient(create_app(db, chosen))


@pytest.fixture
def api(seeded: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.delenv("SYNCD_SECRET_KEY", raising=False)
    with make_client(seeded) as client:
        yield client


def headers_for(who: str) -> dict[str, str]:
    if who == "none":
        return {}
    if who in KEYS:
        return bearer(KEYS[who])
    kind, subject = who.split(":")
    return bearer(link_token(kind, subject))


def _ok(expected: dict[str, int], code: int) -> dict[str, int]:
    return {who: code for who, status in expected.items() if status == 200}


CALLERS = ("none", "admin", "app", "read-only", "student:sam", "mentor:ana", "mentor:ben")
READ = dict(zip(CALLERS, (401, 200, 200, 200, 403, 200, 403), strict=True))
WRITE = dict(zip(CALLERS, (401, 200, 200, 403, 403, 200, 403), strict=True))
ENDPOINTS: list[tuple[str, str, dict[str, Any] | None, dict[str, int]]] = [
    ("GET", f"{ANA}/hours", None, READ),
    ("PUT", f"{ANA}/hours", {"specs": ["mon-fri 10:00-12:00"]}, WRITE),
    ("PUT", f"{ANA}/overrides/2027-03-10", {"ranges": []}, WRITE),
    ("DELETE", f"{ANA}/overrides/2027-03-10", None, WRITE),
    ("GET", f"{ANA}/calendar-status", None, READ),
    ("PATCH", f"{ANA}/calendars/1", {"blocks_time": False}, WRITE),
    # An unreachable URL: the request is authorised, then fails on the URL (422).
    ("POST", f"{ANA}/calendars/caldav", {"url": "ftp://x/"}, {**WRITE, **_ok(WRITE, 422)}),
    ("DELETE", f"{ANA}/calendars/1", None, {**WRITE, **_ok(WRITE, 204)}),
]


@pytest.mark.parametrize("who", CALLERS)
@pytest.mark.parametrize(("method", "path", "body", "expected"), ENDPOINTS)
def test_who_may_do_what(
    api: TestClient,
    who: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    expected: dict[str, int],
) -> None:
    response = api.request(method, path, json=body, headers=headers_for(who))
    assert response.status_code == expected[who], response.text


def test_a_mentor_link_never_reaches_another_mentor(api: TestClient) -> None:
    ben = headers_for("mentor:ben")
    assert api.put(f"{ANA}/hours", json={"specs": []}, headers=ben).status_code == 403
    # Ben's own path with Ana's calendar id: not his calendar, so it does not exist for him.
    response = api.patch("/v1/mentors/ben/calendars/1", json={"is_destination": True}, headers=ben)
    assert response.status_code == 404
    status = api.get(f"{ANA}/calendar-status", headers=headers_for("admin")).json()
    assert status[0]["is_destination"] is False


def test_hours_are_shown_in_the_mentors_zone(api: TestClient) -> None:
    hours = api.get(f"{ANA}/hours", headers=headers_for("mentor:ana")).json()
    assert hours["timezone"] == "Europe/Madrid"
    assert hours["weekly"]["mon"] == ["09:00-17:00"]
    assert hours["weekly"]["sat"] == []
    assert hours["overrides"] == []


def test_new_weekly_hours_change_the_slots(api: TestClient) -> None:
    ana = headers_for("mentor:ana")
    specs = ["mon,wed 09:00-10:00", "tue 14:00-15:00", "fri 22:00-24:00"]
    hours = api.put(f"{ANA}/hours", json={"specs": specs}, headers=ana).json()
    assert hours["weekly"]["mon"] == ["09:00-10:00"]
    assert hours["weekly"]["tue"] == ["14:00-15:00"]
    assert hours["weekly"]["fri"] == ["22:00-24:00"]
    assert hours["weekly"]["thu"] == []
    params = {"tz": "Europe/Madrid", "from": "2027-03-02", "days": 1, "mentor": "ana"}
    slots = api.get(f"/v1/services/{SERVICE}/slots", params=params, headers=ana).json()
    assert [slot["start"] for slot in slots] == ["2027-03-02T14:00:00+01:00"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"specs": ["someday 09:00-10:00"]}, "invalid days"),
        ({"specs": ["mon 9-5"]}, "expected HH:MM-HH:MM"),
        ({"specs": ["mon 25:00-26:00"]}, "invalid time"),
        ({"specs": "mon 09:00-10:00"}, "specs"),
        ({"weekly": {}}, "specs"),
    ],
)
def test_bad_hours_are_refused_and_change_nothing(
    api: TestClient, body: dict[str, Any], message: str
) -> None:
    admin = headers_for("admin")
    response = api.put(f"{ANA}/hours", json=body, headers=admin)
    assert response.status_code == 422
    assert message in response.json()["message"]
    assert api.get(f"{ANA}/hours", headers=admin).json()["weekly"]["mon"] == ["09:00-17:00"]


def test_overrides_set_mark_unavailable_and_drop(api: TestClient) -> None:
    ana = headers_for("mentor:ana")
    api.put(f"{ANA}/overrides/2027-03-03", json={"ranges": ["10:00-11:00"]}, headers=ana)
    hours = api.put(f"{ANA}/overrides/2027-03-04", json={"ranges": []}, headers=ana).json()
    assert hours["overrides"] == [
        {"date": "2027-03-03", "ranges": ["10:00-11:00"]},
        {"date": "2027-03-04", "ranges": []},
    ]
    params = {"tz": "Europe/Madrid", "from": "2027-03-03", "days": 2, "mentor": "ana"}
    slots = api.get(f"/v1/services/{SERVICE}/slots", params=params, headers=ana).json()
    assert [slot["start"] for slot in slots] == ["2027-03-03T10:00:00+01:00"]
    hours = api.delete(f"{ANA}/overrides/2027-03-04", headers=ana).json()
    assert [row["date"] for row in hours["overrides"]] == ["2027-03-03"]


def test_past_overrides_are_not_listed(api: TestClient) -> None:
    ana = headers_for("mentor:ana")
    hours = api.put(f"{ANA}/overrides/2027-02-10", json={"ranges": []}, headers=ana).json()
    assert hours["overrides"] == []


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (f"{ANA}/overrides/1999-01-01", {"ranges": []}),
        (f"{ANA}/overrides/2027-02-30", {"ranges": []}),
        (f"{ANA}/overrides/2027-03-10", {"ranges": ["10:00"]}),
        (f"{ANA}/overrides/2027-03-10", {"ranges": ["10:00-11:00"] * 11}),
    ],
)
def test_bad_overrides_are_refused(api: TestClient, path: str, body: dict[str, Any]) -> None:
    assert api.put(path, json=body, headers=headers_for("admin")).status_code == 422


def test_unknown_mentor_is_404(api: TestClient) -> None:
    admin = headers_for("admin")
    assert api.get("/v1/mentors/nobody/hours", headers=admin).status_code == 404
    assert api.get("/v1/mentors/nobody/calendar-status", headers=admin).status_code == 404


# -- calendars ------------------------------------------------------------------------------


def test_calendar_status_in_words_without_secrets(api: TestClient) -> None:
    response = api.get(f"{ANA}/calendar-status", headers=headers_for("mentor:ana"))
    [calendar] = response.json()
    assert calendar["last_sync_words"] == "never synced successfully"
    assert (
        calendar["problem"]
        == "the calendar server sent an answer syncd could not use; it will try again"
    )
    assert "hunter2" not in response.text and "secret-sync-token" not in response.text


def test_choosing_blocking_and_destination(api: TestClient, seeded: Database) -> None:
    with seeded.write_session() as session:
        session.add(Calendar(mentor_id="ana", provider="caldav", remote_id="r2", name="Home"))
    ana = headers_for("mentor:ana")
    api.patch(f"{ANA}/calendars/1", json={"is_destination": True}, headers=ana)
    rows = api.patch(f"{ANA}/calendars/2", json={"is_destination": True}, headers=ana).json()
    assert [(row["name"], row["is_destination"]) for row in rows] == [
        ("Work", False),
        ("Home", True),
    ]
    rows = api.patch(f"{ANA}/calendars/2", json={"blocks_time": False}, headers=ana).json()
    assert [row["blocks_time"] for row in rows] == [True, False]
    rows = api.patch(f"{ANA}/calendars/2", json={"is_destination": False}, headers=ana).json()
    assert [row["is_destination"] for row in rows] == [False, False]


def test_patch_refuses_unknown_fields(api: TestClient) -> None:
    response = api.patch(
        f"{ANA}/calendars/1", json={"remote_id": "x"}, headers=headers_for("admin")
    )
    assert response.status_code == 422


def test_disconnecting_a_calendar(api: TestClient, seeded: Database) -> None:
    assert api.delete(f"{ANA}/calendars/1", headers=headers_for("mentor:ana")).status_code == 204
    assert api.get(f"{ANA}/calendar-status", headers=headers_for("admin")).json() == []


# -- connecting CalDAV against a real Radicale ----------------------------------------------


@pytest.fixture(scope="module")
def radicale() -> Iterator[DavServer]:
    with radicale_server(auth=("ana", PASSWORD), username="ana") as server:
        make_calendar(server, "work", timezone="Europe/Madrid")
        make_calendar(server, "home")
        yield server


def connect_body(server: DavServer, password: str = PASSWORD) -> dict[str, Any]:
    return {"url": server.principal_url, "username": "ana", "password": password}


def test_caldav_connect_tests_live_and_stores_the_password_encrypted(
    seeded: Database, radicale: DavServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with make_client(seeded, allow_private_caldav=True) as client:
        response = client.post(
            f"{ANA}/calendars/caldav",
            json=connect_body(radicale),
            headers=headers_for("mentor:ana"),
        )
    assert response.status_code == 201, response.text
    names = sorted(row["name"] for row in response.json()["calendars"])
    assert names == ["Work", "home", "work"]  # the seeded one plus both Radicale calendars
    assert PASSWORD not in response.text and PASSWORD not in caplog.text
    with seeded.session() as session:
        [account] = session.query(CalendarAccount).all()
        assert account.secret is not None and PASSWORD not in account.secret
        assert SecretBox(KEY_MATERIAL).decrypt(account.secret).reveal() == PASSWORD
        assert len(calendar_store.calendars_of_account(session, account.id)) == 2


def test_caldav_wrong_password_saves_nothing(seeded: Database, radicale: DavServer) -> None:
    with make_client(seeded, allow_private_caldav=True) as client:
        response = client.post(
            f"{ANA}/calendars/caldav",
            json=connect_body(radicale, "wrong-password"),
            headers=headers_for("mentor:ana"),
        )
    assert response.status_code == 422
    assert "rejected the credentials" in response.json()["message"]
    assert "wrong-password" not in response.text
    with seeded.session() as session:
        assert session.query(CalendarAccount).count() == 0


def test_caldav_on_a_private_address_is_refused_by_default(
    api: TestClient, seeded: Database, radicale: DavServer
) -> None:
    response = api.post(
        f"{ANA}/calendars/caldav", json=connect_body(radicale), headers=headers_for("mentor:ana")
    )
    assert response.status_code == 422
    assert response.json()["error"] == "url_refused"
    assert "loopback" in response.json()["message"]
    with seeded.session() as session:
        assert session.query(CalendarAccount).count() == 0


def test_caldav_connect_without_a_key_is_503_before_any_request(
    seeded: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SYNCD_SECRET_KEY", raising=False)
    chosen = dataclasses.replace(settings(), allow_private_caldav=True)  # no [security] key
    with TestClient(create_app(seeded, chosen)) as client:
        response = client.post(
            f"{ANA}/calendars/caldav",
            json={"url": "http://127.0.0.1:9/", "password": "x"},
            headers=headers_for("admin"),
        )
    assert response.status_code == 503
    assert response.json()["error"] == "not_configured"


# -- the page -------------------------------------------------------------------------------


def test_mentor_page_renders_for_its_own_link(api: TestClient) -> None:
    response = api.get(f"/m/{link_token('mentor', 'ana')}")
    assert response.status_code == 200
    page = response.text
    assert "Hello Ana Ruiz" in page and "Europe/Madrid" in page
    for field in ("caldav-url", "caldav-user", "caldav-password", "hours-mon", "override-date"):
        assert f'<label for="{field}"' in page
    assert "Connect Google Calendar" not in page  # no Google client configured
    assert "/static/syncd/mentor.js" in page


@pytest.mark.parametrize(
    ("token", "status"),
    [
        (link_token("student", "sam"), 403),
        (link_token("mentor", "ana", now=NOW - timedelta(days=30)), 401),
        ("sl1.forged.token", 401),
    ],
)
def test_mentor_page_refuses_other_links(api: TestClient, token: str, status: int) -> None:
    assert api.get(f"/m/{token}").status_code == status


def test_google_notice_shows_only_fixed_texts(api: TestClient) -> None:
    token = link_token("mentor", "ana")
    assert "Google Calendar is connected" in api.get(f"/m/{token}?google=connected").text
    page = api.get(f"/m/{token}?google=<script>alert(1)</script>").text
    assert "<script>alert" not in page


# -- words ------------------------------------------------------------------------------------

T0 = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (5, "just now"),
        (60, "1 minute ago"),
        (3 * 60 + 59, "3 minutes ago"),
        (3600, "1 hour ago"),
        (5 * 3600, "5 hours ago"),
        (86400 * 2 + 5, "2 days ago"),
    ],
)
def test_ago(seconds: int, words: str) -> None:
    assert ago(T0 - timedelta(seconds=seconds), T0) == words


def facts(**changes: Any) -> SyncFacts:
    base = SyncFacts("caldav", T0 - timedelta(minutes=3), None, 0, False)
    return dataclasses.replace(base, **changes)


@pytest.mark.parametrize(
    ("changes", "sync", "problem"),
    [
        ({}, "synced 3 minutes ago", None),
        ({"last_success": None}, "not synced yet", None),
        (
            {
                "needs_reconnect": True,
                "last_error": "needs reconnect: PROPFIND x: access denied (HTTP 401)",
            },
            "synced 3 minutes ago",
            "the server rejected the password — reconnect",
        ),
        ({"needs_reconnect": True, "last_error": "needs reconnect: ?"}, None, "needs reconnect"),
        (
            {"needs_reconnect": True, "provider": "google", "last_error": "needs reconnect: x"},
            None,
            "Google access was revoked or has expired — reconnect",
        ),
        (
            {"needs_reconnect": True, "last_error": "needs reconnect: cannot be decrypted"},
            None,
            "the stored password can no longer be read — reconnect",
        ),
        (
            {"last_error": "TransientError: timed out", "consecutive_failures": 4},
            None,
            "the calendar server could not be reached; syncd keeps retrying (4 tries so far)",
        ),
        (
            {"last_error": "internal error: KeyError"},
            None,
            "syncd hit an internal error while syncing; the admin has the details",
        ),
    ],
)
def test_sync_state_in_words(
    changes: dict[str, Any], sync: str | None, problem: str | None
) -> None:
    state = facts(**changes)
    if sync is not None:
        assert last_sync_words(state, T0) == sync
    assert problem_words(state) == problem


# -- coalescing identical slot queries (syncd.api.coalesce) ---------------------------------


def start_follower(target: Callable[[], None]) -> threading.Thread:
    """Run `target` in a thread and give it time to reach the waiting leader's computation."""
    entering = threading.Event()

    def run() -> None:
        entering.set()
        target()

    thread = threading.Thread(target=run)
    thread.start()
    assert entering.wait(5)
    time.sleep(0.1)  # from `entering` to waiting inside run() is a few microseconds
    return thread


def test_concurrent_identical_calls_share_one_computation() -> None:
    flight: SingleFlight[int] = SingleFlight()
    started, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def slow() -> int:
        calls.append("slow")
        started.set()
        assert release.wait(5)
        return 42

    results: list[int] = []
    leader = threading.Thread(target=lambda: results.append(flight.run("k", slow)))
    leader.start()
    assert started.wait(5)
    follower = start_follower(lambda: results.append(flight.run("k", slow)))
    assert flight.run("other key", lambda: 7) == 7  # another key never waits
    release.set()
    leader.join(5)
    follower.join(5)
    assert (results, calls) == ([42, 42], ["slow"])
    assert flight.run("k", lambda: 1) == 1  # nothing is kept once the computation ended


def test_a_failed_computation_fails_its_followers_and_is_not_kept() -> None:
    flight: SingleFlight[int] = SingleFlight()
    started, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def failing() -> int:
        calls.append("failing")
        started.set()
        assert release.wait(5)
        raise ValueError("boom")

    errors: list[BaseException] = []

    def call() -> None:
        try:
            flight.run("k", failing)
        except ValueError as error:
            errors.append(error)

    leader = threading.Thread(target=call)
    leader.start()
    assert started.wait(5)
    follower = start_follower(call)
    release.set()
    leader.join(5)
    follower.join(5)
    assert ([str(error) for error in errors], calls) == (["boom", "boom"], ["failing"])
    assert flight.run("k", lambda: 3) == 3


def test_a_follower_that_waits_too_long_computes_itself() -> None:
    flight: SingleFlight[str] = SingleFlight(follower_wait_s=0.05)
    started, release = threading.Event(), threading.Event()

    def stuck() -> str:
        started.set()
        return str(release.wait(5))

    leader = threading.Thread(target=lambda: flight.run("k", stuck))
    leader.start()
    assert started.wait(5)
    began = time.monotonic()
    assert flight.run("k", lambda: "own") == "own"
    assert time.monotonic() - began >= 0.04  # it did wait for the leader first
    release.set()
    leader.join(5)
