"""The Google connector, through the real google-api-python-client, against the fake server."""

from __future__ import annotations

import json
import logging
import threading
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.base import (
    AuthError,
    BusyPeriod,
    EventRef,
    EventSpec,
    NotFound,
    PreconditionFailed,
    StaleSyncState,
    TransientError,
)
from connectors.google import GoogleConnector, RetryPolicy
from connectors.google_auth import (
    credentials_from_authorized_user_info,
    credentials_to_json,
    load_token_file,
    run_installed_app_flow,
)
from syncd.identity import GOOGLE_PRIVATE_KEY, booking_uid
from tests.fake_google import FakeGoogle

CAL = "mentor@example.com"
CLIENT_ID = "client-1"
CLIENT_SECRET = "s3cret-client-value"
BOOKING = "0123456789abcdef0123456789abcdef"
NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


class RecordingSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def google() -> Iterator[FakeGoogle]:
    with FakeGoogle() as fake:
        fake.register_client(CLIENT_ID, CLIENT_SECRET)
        fake.add_calendar(CAL, summary="Work", time_zone="Europe/Berlin", primary=True)
        yield fake


@pytest.fixture
def refresh_token(google: FakeGoogle) -> str:
    return google.issue_refresh_token(CLIENT_ID)


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def make_connector(
    google: FakeGoogle, refresh_token: str, sleep: RecordingSleep
) -> Iterator[Callable[..., GoogleConnector]]:
    made: list[GoogleConnector] = []

    def make(**options: Any) -> GoogleConnector:
        info = {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "refresh_token": refresh_token,
        }
        options.setdefault("retry", RetryPolicy(max_attempts=4, base_delay=0.001, sleep=sleep))
        connector = GoogleConnector(
            info,
            api_endpoint=google.api_endpoint,
            token_uri=google.token_uri,
            timeout=5,
            clock=lambda: NOW,
            **options,
        )
        made.append(connector)
        return connector

    yield make
    for connector in made:
        connector.close()


@pytest.fixture
def connector(make_connector: Callable[..., GoogleConnector]) -> GoogleConnector:
    return make_connector()


def event(day: int, hour: int = 10, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "summary": f"day {day}",
        "start": {"dateTime": f"2030-02-{day:02d}T{hour:02d}:00:00Z"},
        "end": {"dateTime": f"2030-02-{day:02d}T{hour + 1:02d}:00:00Z"},
    }
    body.update(extra)
    return body


def spec(**changes: Any) -> EventSpec:
    values: dict[str, Any] = {
        "event_key": BOOKING,
        "uid": booking_uid(BOOKING),
        "summary": "Mentoring: Ada / Grace",
        "start": datetime(2030, 2, 3, 9, 0, tzinfo=UTC),
        "end": datetime(2030, 2, 3, 10, 0, tzinfo=UTC),
        "attendees": [("Ada Student", "ada@example.com")],
    }
    values.update(changes)
    return EventSpec(**values)


# -- calendars and pulls -----------------------------------------------------------------


def test_list_calendars(google: FakeGoogle, connector: GoogleConnector) -> None:
    google.add_calendar("shared@example.com", summary="Team", access_role="reader")
    calendars = {c.remote_id: c for c in connector.list_calendars()}
    assert set(calendars) == {CAL, "shared@example.com"}
    assert calendars[CAL].name == "Work"
    assert calendars[CAL].timezone == "Europe/Berlin"
    assert calendars[CAL].primary and not calendars[CAL].read_only
    assert calendars["shared@example.com"].read_only
    assert not calendars["shared@example.com"].primary


def test_full_pull_follows_pages_until_sync_token(
    google: FakeGoogle, connector: GoogleConnector
) -> None:
    google.page_size_cap = 4
    created = {google.put_event(CAL, event(day))["id"] for day in range(1, 11)}

    changes = connector.pull(CAL, None)

    assert {obj.ref for obj in changes.upserts} == created
    assert all(obj.kind == "google" and obj.data["id"] == obj.ref for obj in changes.upserts)
    assert changes.full and changes.state and changes.deleted == []
    assert changes.calendar_timezone == "Europe/Berlin"
    listed = google.requests_to("GET", "/events")
    assert len(listed) == 3
    first = listed[0].query
    assert first["singleEvents"] == ["true"] and first["showDeleted"] == ["true"]
    assert first["maxResults"] == ["2500"]
    assert first["timeMin"] == ["2029-12-31T12:00:00Z"]  # NOW minus the 1-day lookback
    assert "syncToken" not in first
    assert all("pageToken" in r.query for r in listed[1:])


def test_incremental_pull_sees_adds_changes_and_deletions(
    google: FakeGoogle, connector: GoogleConnector
) -> None:
    kept = google.put_event(CAL, event(1))
    moved = google.put_event(CAL, event(2))
    dropped = google.put_event(CAL, event(3))
    state = connector.pull(CAL, None).state
    google.change_event(CAL, moved["id"], start={"dateTime": "2030-02-02T15:00:00Z"})
    google.remove_event(CAL, dropped["id"])
    added = google.put_event(CAL, event(4))
    before = len(google.requests)

    changes = connector.pull(CAL, state)

    upserts = {obj.ref: obj.data for obj in changes.upserts}
    assert set(upserts) == {moved["id"], added["id"]}
    assert upserts[moved["id"]]["start"]["dateTime"] == "2030-02-02T15:00:00Z"
    assert list(changes.deleted) == [dropped["id"]]
    assert kept["id"] not in upserts
    assert not changes.full and changes.state not in (None, state)
    [incremental] = google.requests[before:]  # one request per calendar and round
    assert incremental.query["syncToken"] == [state]
    assert not {"timeMin", "timeMax"} & set(incremental.query)


def test_invalidated_sync_token_raises_stale_sync_state(
    google: FakeGoogle, connector: GoogleConnector
) -> None:
    state = connector.pull(CAL, None).state
    google.expire_sync_tokens()
    with pytest.raises(StaleSyncState):
        connector.pull(CAL, state)
    assert connector.pull(CAL, None).full


# -- retries -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [403, 429, 500, 503])
def test_backs_off_on_rate_limits_and_server_errors(
    google: FakeGoogle, connector: GoogleConnector, sleep: RecordingSleep, status: int
) -> None:
    connector.list_calendars()  # fetch the access token first
    google.fail_next(status, count=2)
    assert [c.remote_id for c in connector.list_calendars()] == [CAL]
    assert len(sleep.delays) == 2
    assert 0 < sleep.delays[0] <= sleep.delays[1] * 2


def test_retry_after_is_honoured(
    google: FakeGoogle, connector: GoogleConnector, sleep: RecordingSleep
) -> None:
    google.fail_next(429, retry_after="3")
    connector.list_calendars()
    assert sleep.delays == [3.0]


def test_gives_up_with_transient_error(
    google: FakeGoogle, connector: GoogleConnector, sleep: RecordingSleep
) -> None:
    google.fail_next(503, count=10, retry_after="5")
    with pytest.raises(TransientError) as caught:
        connector.list_calendars()
    assert caught.value.retry_after == 5.0
    assert len(sleep.delays) == 3  # 4 attempts
    assert len(google.requests_to("GET", "/calendarList")) == 4


def test_forbidden_is_an_auth_error_without_retry(
    google: FakeGoogle, connector: GoogleConnector, sleep: RecordingSleep
) -> None:
    google.fail_next(403, reason=("global", "forbidden", "Forbidden"))
    with pytest.raises(AuthError, match="permission"):
        connector.list_calendars()
    assert sleep.delays == []


def test_daily_quota_is_not_retried_in_the_same_pass(
    google: FakeGoogle, connector: GoogleConnector, sleep: RecordingSleep
) -> None:
    google.fail_next(
        403, reason=("usageLimits", "quotaExceeded", "Calendar usage limits exceeded.")
    )
    with pytest.raises(TransientError):
        connector.list_calendars()
    assert sleep.delays == []


def test_backoff_grows_exponentially_within_bounds() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (6, 8.0)]:
        delay = policy.delay(attempt, None)
        assert ceiling / 2 <= delay <= ceiling
    assert policy.delay(1, 30.0) == 30.0


# -- writes --------------------------------------------------------------------------------


def test_put_event_twice_creates_one_event(google: FakeGoogle, connector: GoogleConnector) -> None:
    first = connector.put_event(CAL, spec())
    second = connector.put_event(CAL, spec(summary="retried after a crash"))

    assert first.ref == second.ref == BOOKING
    [stored] = google.stored_events(CAL)
    assert stored["id"] == BOOKING
    assert stored["summary"] == "retried after a crash"
    assert stored["extendedProperties"]["private"][GOOGLE_PRIVATE_KEY] == BOOKING
    assert stored["attendees"] == [{"email": "ada@example.com", "displayName": "Ada Student"}]
    assert stored["start"]["dateTime"] == "2030-02-03T09:00:00Z"
    [insert, _] = google.requests_to("POST", "/events")
    assert insert.query["sendUpdates"] == ["none"]


def test_put_event_with_ref_patches(google: FakeGoogle, connector: GoogleConnector) -> None:
    ref = connector.put_event(CAL, spec())
    later = datetime(2030, 2, 4, 14, 0, tzinfo=UTC)
    updated = connector.put_event(CAL, spec(start=later, end=later + timedelta(hours=1)), ref)
    assert updated.ref == ref.ref and updated.etag != ref.etag
    [stored] = google.stored_events(CAL)
    assert stored["start"]["dateTime"] == "2030-02-04T14:00:00Z"
    assert len(google.requests_to("PATCH", f"/events/{BOOKING}")) == 1


def test_update_with_an_outdated_etag_fails(google: FakeGoogle, connector: GoogleConnector) -> None:
    created = connector.put_event(CAL, spec())
    google.change_event(CAL, BOOKING, colorId="5")  # the mentor touched it in Google
    with pytest.raises(PreconditionFailed):
        connector.put_event(CAL, spec(summary="ours"), created)
    [patch] = google.requests_to("PATCH", f"/events/{BOOKING}")
    assert patch.body["summary"] == "ours"
    assert google.stored_events(CAL)[0]["summary"] == spec().summary


def test_put_event_after_delete_brings_it_back(
    google: FakeGoogle, connector: GoogleConnector
) -> None:
    ref = connector.put_event(CAL, spec())
    connector.delete_event(CAL, ref)
    assert google.stored_events(CAL) == []
    connector.put_event(CAL, spec())
    assert [e["status"] for e in google.stored_events(CAL)] == ["confirmed"]


def test_delete_twice_and_unknown_are_fine(google: FakeGoogle, connector: GoogleConnector) -> None:
    ref = connector.put_event(CAL, spec())
    connector.delete_event(CAL, ref)
    connector.delete_event(CAL, ref)
    connector.delete_event(CAL, EventRef("neverexisted1"))
    assert google.stored_events(CAL) == []
    assert len(google.requests_to("DELETE", f"/events/{BOOKING}")) == 2


def test_meet_link_and_send_updates_options(
    google: FakeGoogle, make_connector: Callable[..., GoogleConnector]
) -> None:
    connector = make_connector(create_meet=True, send_updates="all")
    connector.put_event(CAL, spec())
    [stored] = google.stored_events(CAL)
    assert stored["hangoutLink"].startswith("https://meet.google.com/")
    [insert] = google.requests_to("POST", "/events")
    assert insert.query["conferenceDataVersion"] == ["1"]
    assert insert.query["sendUpdates"] == ["all"]


def test_invalid_event_key_is_refused_before_any_request(
    google: FakeGoogle, connector: GoogleConnector
) -> None:
    with pytest.raises(ValueError, match="event_key"):
        connector.put_event(CAL, spec(event_key="Not-Base32hex"))
    assert google.requests_to("POST", "/events") == []


# -- free/busy -----------------------------------------------------------------------------


def test_busy_splits_long_ranges_and_merges_across_chunks(
    google: FakeGoogle, connector: GoogleConnector
) -> None:
    start = datetime(2030, 1, 1, tzinfo=UTC)
    end = start + timedelta(days=200)
    border = start + timedelta(days=90)
    google.put_event(CAL, event(5))
    google.put_event(
        CAL,
        {
            "summary": "across the chunk border",
            "start": {"dateTime": "2030-03-31T22:00:00Z"},
            "end": {"dateTime": "2030-04-01T02:00:00Z"},
        },
    )
    assert border == datetime(2030, 4, 1, tzinfo=UTC)

    periods = connector.busy([CAL], start, end)

    assert periods == [
        BusyPeriod(datetime(2030, 2, 5, 10, tzinfo=UTC), datetime(2030, 2, 5, 11, tzinfo=UTC)),
        BusyPeriod(datetime(2030, 3, 31, 22, tzinfo=UTC), datetime(2030, 4, 1, 2, tzinfo=UTC)),
    ]
    queries = [r.body for r in google.requests_to("POST", "/freeBusy")]
    assert len(queries) == 3
    assert [q["timeMin"] for q in queries] == [
        "2030-01-01T00:00:00Z",
        "2030-04-01T00:00:00Z",
        "2030-06-30T00:00:00Z",
    ]
    assert queries[-1]["timeMax"] == "2030-07-20T00:00:00Z"


def test_busy_batches_more_than_50_calendars(
    google: FakeGoogle, connector: GoogleConnector
) -> None:
    calendars = [f"c{n:03d}@example.com" for n in range(120)]
    for calendar_id in calendars:
        google.add_calendar(calendar_id)
    google.put_event(calendars[-1], event(2))
    start = datetime(2030, 2, 1, tzinfo=UTC)

    periods = connector.busy(calendars, start, start + timedelta(days=7))

    assert periods == [
        BusyPeriod(datetime(2030, 2, 2, 10, tzinfo=UTC), datetime(2030, 2, 2, 11, tzinfo=UTC))
    ]
    sizes = [len(r.body["items"]) for r in google.requests_to("POST", "/freeBusy")]
    assert sizes == [50, 50, 20]


def test_busy_on_unknown_calendar_raises_not_found(connector: GoogleConnector) -> None:
    start = datetime(2030, 2, 1, tzinfo=UTC)
    with pytest.raises(NotFound, match=r"nobody@example\.com"):
        connector.busy([CAL, "nobody@example.com"], start, start + timedelta(days=1))


def test_busy_refuses_naive_datetimes(connector: GoogleConnector) -> None:
    with pytest.raises(ValueError, match="aware"):
        connector.busy([CAL], datetime(2030, 1, 1), datetime(2030, 1, 2))


# -- OAuth ---------------------------------------------------------------------------------


def test_refreshes_on_401_with_the_configured_token_uri(
    google: FakeGoogle, connector: GoogleConnector
) -> None:
    connector.list_calendars()
    assert len(google.requests_to("POST", "/token")) == 1
    google.expire_access_tokens()
    connector.list_calendars()
    assert len(google.requests_to("POST", "/token")) == 2
    assert connector.credentials.token_uri == google.token_uri


def test_revoked_refresh_token_is_an_auth_error(
    google: FakeGoogle, connector: GoogleConnector, refresh_token: str, sleep: RecordingSleep
) -> None:
    google.revoke_refresh_token(refresh_token)
    with pytest.raises(AuthError, match="reconnect") as caught:
        connector.list_calendars()
    assert "invalid_grant" in str(caught.value)
    assert sleep.delays == []


def test_secrets_never_reach_the_logs(
    google: FakeGoogle,
    make_connector: Callable[..., GoogleConnector],
    refresh_token: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    connector = make_connector()
    connector.pull(CAL, None)
    google.fail_next(429)
    connector.put_event(CAL, spec())
    access_token = connector.credentials.token
    assert access_token
    google.revoke_refresh_token(refresh_token)
    google.expire_access_tokens()
    with pytest.raises(AuthError):
        connector.list_calendars()
    assert caplog.records, "expected the retry to be logged"
    for secret in (refresh_token, CLIENT_SECRET, access_token):
        assert secret not in caplog.text


def test_token_file_round_trip_and_refresh(
    google: FakeGoogle, refresh_token: str, tmp_path: Path
) -> None:
    info = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": refresh_token,
        "token_uri": google.token_uri,
    }
    path = tmp_path / "token.json"
    path.write_text(json.dumps(info))
    credentials = load_token_file(path)
    assert credentials.token_uri == google.token_uri  # the file's, not Google's
    connector = GoogleConnector(credentials, api_endpoint=google.api_endpoint, timeout=5)
    try:
        assert [c.remote_id for c in connector.list_calendars()] == [CAL]
    finally:
        connector.close()
    saved = json.loads(credentials_to_json(credentials))
    assert saved["refresh_token"] == refresh_token
    assert saved["token"] and saved["token_uri"] == google.token_uri


def test_configured_token_uri_overrides_googles_default() -> None:
    info = {"client_id": "a", "client_secret": "b", "refresh_token": "c"}
    assert credentials_from_authorized_user_info(info, "http://127.0.0.1:9/token").token_uri == (
        "http://127.0.0.1:9/token"
    )
    default = credentials_from_authorized_user_info(info).token_uri
    assert default == "https://oauth2.googleapis.com/token"


def test_incomplete_token_info_is_an_auth_error(tmp_path: Path) -> None:
    path = tmp_path / "token.json"
    path.write_text(json.dumps({"client_id": "a"}))
    with pytest.raises(AuthError, match="refresh_token"):
        load_token_file(path)
    with pytest.raises(AuthError, match="cannot read"):
        load_token_file(tmp_path / "missing.json")


def test_installed_app_flow_over_loopback(
    google: FakeGoogle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets_file = tmp_path / "client_secret.json"
    secrets_file.write_text(
        json.dumps(
            {
                "installed": {
                    "client_id": CLIENT_ID,
                    "client_secret": CLIENT_SECRET,
                    "auth_uri": google.auth_uri,
                    "token_uri": google.token_uri,
                    "redirect_uris": ["http://127.0.0.1"],
                }
            }
        )
    )
    # oauthlib insists on https for the token endpoint; the fake is plain http on loopback.
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    visits: list[threading.Thread] = []

    class Browser:
        """Follows the consent URL the way a user's browser would, from another thread."""

        def open(self, url: str, new: int = 0, autoraise: bool = True) -> bool:
            def visit() -> None:
                with urllib.request.urlopen(url, timeout=5) as response:
                    response.read()

            thread = threading.Thread(target=visit, daemon=True)
            thread.start()
            visits.append(thread)
            return True

    monkeypatch.setattr("webbrowser.get", lambda using=None: Browser())

    credentials = run_installed_app_flow(secrets_file, open_browser=True, timeout_seconds=10)

    for thread in visits:
        thread.join(timeout=5)
    assert credentials.refresh_token
    assert credentials.token_uri == google.token_uri
    [consent] = google.requests_to("GET", "/auth")
    assert consent.query["access_type"] == ["offline"]
    assert "https://www.googleapis.com/auth/calendar.events" in consent.query["scope"][0]
