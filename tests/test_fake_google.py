"""The fake Google server behaves as Google's Calendar API v3 documentation says."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fake_google import FakeGoogle

CAL = "mentor@example.com"


@pytest.fixture
def google() -> Iterator[FakeGoogle]:
    with FakeGoogle() as fake:
        fake.add_calendar(CAL, time_zone="Europe/Berlin", primary=True)
        yield fake


@pytest.fixture
def api(google: FakeGoogle) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {google.issue_access_token()}"}
    with httpx.Client(base_url=google.api_endpoint, headers=headers, timeout=5) as client:
        yield client


def event(n: int, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "summary": f"event {n}",
        "start": {"dateTime": f"2030-01-{n % 28 + 1:02d}T10:00:00Z"},
        "end": {"dateTime": f"2030-01-{n % 28 + 1:02d}T11:00:00Z"},
    }
    body.update(extra)
    return body


def reason(response: httpx.Response) -> str:
    return str(response.json()["error"]["errors"][0]["reason"])


def list_all(api: httpx.Client, **params: Any) -> tuple[list[dict[str, Any]], str, int]:
    items: list[dict[str, Any]] = []
    pages = 0
    while True:
        response = api.get(f"calendars/{CAL}/events", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        pages += 1
        items.extend(page["items"])
        if "nextPageToken" in page:
            assert "nextSyncToken" not in page
            params = {"pageToken": page["nextPageToken"]}
            continue
        return items, page["nextSyncToken"], pages


def test_requests_without_a_valid_bearer_token_get_401(google: FakeGoogle) -> None:
    with httpx.Client(base_url=google.api_endpoint, timeout=5) as client:
        missing = client.get("users/me/calendarList")
        wrong = client.get("users/me/calendarList", headers={"Authorization": "Bearer nope"})
    assert missing.status_code == wrong.status_code == 401
    assert reason(missing) == "authError"


def test_expired_access_tokens_get_401(google: FakeGoogle, api: httpx.Client) -> None:
    assert api.get("users/me/calendarList").status_code == 200
    google.expire_access_tokens()
    assert api.get("users/me/calendarList").status_code == 401


def test_calendar_list_and_get(api: httpx.Client) -> None:
    listed = api.get("users/me/calendarList").json()["items"]
    assert listed == [
        {
            "kind": "calendar#calendarListEntry",
            "id": CAL,
            "summary": CAL,
            "timeZone": "Europe/Berlin",
            "accessRole": "owner",
            "primary": True,
        }
    ]
    assert api.get(f"calendars/{CAL}").json()["timeZone"] == "Europe/Berlin"
    assert api.get("calendars/unknown@example.com").status_code == 404


def test_pages_follow_max_results_and_sync_token_only_on_last_page(
    google: FakeGoogle, api: httpx.Client
) -> None:
    for n in range(7):
        google.put_event(CAL, event(n))
    items, sync_token, pages = list_all(api, maxResults=3)
    assert pages == 3
    assert sorted(i["summary"] for i in items) == [f"event {n}" for n in range(7)]
    assert sync_token


def test_incremental_listing_returns_changes_and_deletions(
    google: FakeGoogle, api: httpx.Client
) -> None:
    kept = google.put_event(CAL, event(1))
    changed = google.put_event(CAL, event(2))
    deleted = google.put_event(CAL, event(3))
    _, token, _ = list_all(api)
    google.change_event(CAL, changed["id"], summary="moved")
    assert api.delete(f"calendars/{CAL}/events/{deleted['id']}").status_code == 204
    added = google.put_event(CAL, event(4))

    items, next_token, _ = list_all(api, syncToken=token)

    by_id = {i["id"]: i for i in items}
    assert set(by_id) == {changed["id"], deleted["id"], added["id"]}
    assert kept["id"] not in by_id
    assert by_id[changed["id"]]["summary"] == "moved"
    assert by_id[deleted["id"]]["status"] == "cancelled"
    assert next_token != token
    assert list_all(api, syncToken=next_token)[0] == []


def test_full_listing_hides_deleted_unless_show_deleted(
    google: FakeGoogle, api: httpx.Client
) -> None:
    gone = google.put_event(CAL, event(1))
    google.remove_event(CAL, gone["id"])
    assert list_all(api)[0] == []
    assert [i["status"] for i in list_all(api, showDeleted="true")[0]] == ["cancelled"]


def test_time_min_bounds_a_full_listing(google: FakeGoogle, api: httpx.Client) -> None:
    google.put_event(CAL, event(1))  # 2030-01-02
    late = google.put_event(CAL, event(10))  # 2030-01-11
    items, _, _ = list_all(api, timeMin="2030-01-05T00:00:00Z")
    assert [i["id"] for i in items] == [late["id"]]


@pytest.mark.parametrize("param", ["timeMin", "timeMax", "updatedMin", "q", "orderBy"])
def test_sync_token_combined_with_filters_is_400(api: httpx.Client, param: str) -> None:
    _, token, _ = list_all(api)
    response = api.get(
        f"calendars/{CAL}/events", params={"syncToken": token, param: "2030-01-01T00:00:00Z"}
    )
    assert response.status_code == 400


def test_invalidated_sync_token_is_410_full_sync_required(
    google: FakeGoogle, api: httpx.Client
) -> None:
    _, token, _ = list_all(api)
    google.expire_sync_tokens()
    response = api.get(f"calendars/{CAL}/events", params={"syncToken": token})
    assert response.status_code == 410
    body = response.json()["error"]
    assert body["code"] == 410
    assert body["errors"][0] == {
        "domain": "calendar",
        "reason": "fullSyncRequired",
        "message": "Sync token is no longer valid, a full sync is required.",
    }


def test_insert_with_client_id_then_duplicate_is_409(api: httpx.Client) -> None:
    body = event(1, id="abcdefghijklmnopqrstuv0123456789")
    first = api.post(f"calendars/{CAL}/events", json=body)
    assert first.status_code == 200
    assert first.json()["id"] == body["id"]
    again = api.post(f"calendars/{CAL}/events", json=body)
    assert again.status_code == 409
    assert reason(again) == "duplicate"


@pytest.mark.parametrize(
    "bad_id", ["abcd", "UPPERCASE123", "has-dash-123", "wxyz12345", "a" * 1025]
)
def test_insert_with_non_base32hex_id_is_400(api: httpx.Client, bad_id: str) -> None:
    response = api.post(f"calendars/{CAL}/events", json=event(1, id=bad_id))
    assert response.status_code == 400


def test_get_patch_update_delete(api: httpx.Client) -> None:
    created = api.post(f"calendars/{CAL}/events", json=event(1, id="event00001")).json()
    url = f"calendars/{CAL}/events/{created['id']}"
    patched = api.patch(url, json={"summary": "patched"}).json()
    assert patched["summary"] == "patched"
    assert patched["start"] == created["start"]
    assert patched["etag"] != created["etag"]
    replaced = api.put(url, json=event(2, summary="replaced")).json()
    assert replaced["summary"] == "replaced"
    assert api.get(url).json()["start"] == event(2)["start"]
    assert api.delete(url).status_code == 204
    assert api.get(url).json()["status"] == "cancelled"
    second = api.delete(url)
    assert second.status_code == 410
    assert reason(second) == "deleted"
    assert api.delete(f"calendars/{CAL}/events/nosuchevent").status_code == 404


def test_meet_link_needs_conference_data_version_1(api: httpx.Client) -> None:
    conference = {
        "createRequest": {"requestId": "r1", "conferenceSolutionKey": {"type": "hangoutsMeet"}}
    }
    without = api.post(f"calendars/{CAL}/events", json=event(1, conferenceData=conference))
    assert "conferenceData" not in without.json()
    with_meet = api.post(
        f"calendars/{CAL}/events",
        params={"conferenceDataVersion": 1},
        json=event(2, conferenceData=conference),
    ).json()
    assert with_meet["hangoutLink"].startswith("https://meet.google.com/")


def test_freebusy_reports_busy_and_per_calendar_errors(
    google: FakeGoogle, api: httpx.Client
) -> None:
    google.put_event(CAL, event(1))
    google.put_event(CAL, event(1, transparency="transparent", summary="free"))
    response = api.post(
        "freeBusy",
        json={
            "timeMin": "2030-01-01T00:00:00Z",
            "timeMax": "2030-01-03T00:00:00Z",
            "items": [{"id": CAL}, {"id": "nobody@example.com"}],
        },
    )
    calendars = response.json()["calendars"]
    assert calendars[CAL]["busy"] == [
        {"start": "2030-01-02T10:00:00Z", "end": "2030-01-02T11:00:00Z"}
    ]
    assert calendars["nobody@example.com"]["errors"][0]["reason"] == "notFound"


@pytest.mark.parametrize(
    ("time_max", "calendar_count", "expected_reason"),
    [
        ("2030-04-02T00:00:00Z", 1, "timeRangeTooLong"),  # 91 days
        ("2030-01-01T00:00:00Z", 1, "timeRangeEmpty"),
        ("2030-01-02T00:00:00Z", 51, "tooManyCalendarsRequested"),
    ],
)
def test_freebusy_limits(
    api: httpx.Client, time_max: str, calendar_count: int, expected_reason: str
) -> None:
    items = [{"id": f"c{n}@example.com"} for n in range(calendar_count)]
    response = api.post(
        "freeBusy", json={"timeMin": "2030-01-01T00:00:00Z", "timeMax": time_max, "items": items}
    )
    assert response.status_code == 400
    assert reason(response) == expected_reason


def test_freebusy_accepts_exactly_90_days_and_50_calendars(api: httpx.Client) -> None:
    items = [{"id": f"c{n}@example.com"} for n in range(50)]
    response = api.post(
        "freeBusy",
        json={"timeMin": "2030-01-01T00:00:00Z", "timeMax": "2030-04-01T00:00:00Z", "items": items},
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("status", "expected_reason"),
    [
        (403, "rateLimitExceeded"),
        (429, "rateLimitExceeded"),
        (500, "backendError"),
        (503, "backendError"),
    ],
)
def test_injected_faults_answer_then_clear(
    google: FakeGoogle, api: httpx.Client, status: int, expected_reason: str
) -> None:
    google.fail_next(status, count=2, retry_after="7")
    first = api.get("users/me/calendarList")
    second = api.get("users/me/calendarList")
    third = api.get("users/me/calendarList")
    assert (first.status_code, second.status_code, third.status_code) == (status, status, 200)
    assert reason(first) == expected_reason
    assert first.headers["Retry-After"] == "7"


def test_token_endpoint_refresh_and_revocation(google: FakeGoogle) -> None:
    refresh = google.issue_refresh_token("client-1")
    form = {
        "grant_type": "refresh_token",
        "refresh_token": refresh,
        "client_id": "client-1",
        "client_secret": "s3cret",
    }
    with httpx.Client(timeout=5) as client:
        granted = client.post(google.token_uri, data=form)
        assert granted.status_code == 200
        token = granted.json()["access_token"]
        listed = client.get(
            f"{google.api_endpoint}users/me/calendarList",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert listed.status_code == 200
        google.revoke_refresh_token(refresh)
        refused = client.post(google.token_uri, data=form)
        assert refused.status_code == 400
        assert refused.json()["error"] == "invalid_grant"
        wrong_secret = client.post(google.token_uri, data={**form, "client_secret": "x"})
        assert wrong_secret.json()["error"] == "invalid_client"


def test_request_log_records_query_parameters(google: FakeGoogle, api: httpx.Client) -> None:
    api.get(f"calendars/{CAL}/events", params={"maxResults": 5, "singleEvents": "true"})
    [logged] = google.requests_to("GET", "/events")
    assert logged.query == {"maxResults": ["5"], "singleEvents": ["true"]}


def test_if_match_with_an_old_etag_is_412(api: httpx.Client) -> None:
    created = api.post(f"calendars/{CAL}/events", json=event(1, id="event00002")).json()
    url = f"calendars/{CAL}/events/{created['id']}"
    current = api.patch(url, json={"summary": "theirs"}, headers={"If-Match": created["etag"]})
    assert current.status_code == 200
    stale = api.patch(url, json={"summary": "ours"}, headers={"If-Match": created["etag"]})
    assert stale.status_code == 412
    assert reason(stale) == "conditionNotMet"
    assert api.get(url).json()["summary"] == "theirs"
