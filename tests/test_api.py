"""The JSON API: every endpoint under every kind of caller, and each endpoint's behaviour."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from syncd.booking import BookingRequest, BookingService
from syncd.links import sign_link
from syncd.store.db import Database
from tests.test_api_helpers import (
    FIRST_SLOT,
    KEYS,
    NOW,
    SECRET,
    SERVICE,
    bearer,
    client,
    link_token,
    seed,
)

SECOND_SLOT = FIRST_SLOT + timedelta(hours=2)
LATER_SLOT = FIRST_SLOT + timedelta(days=1)


@pytest.fixture
def seeded(db: Database) -> Database:
    seed(db)
    return db


@pytest.fixture
def booking_id(seeded: Database) -> str:
    """Sam's booking with Ana, the first slot on Tuesday."""
    request = BookingRequest(SERVICE, "ana", "sam", FIRST_SLOT)
    return BookingService(seeded).book(request, now=NOW).id


@pytest.fixture
def api(seeded: Database) -> Iterator[TestClient]:
    with client(seeded) as test_client:
        yield test_client


def headers_for(who: str) -> dict[str, str]:
    if who == "none":
        return {}
    if who in KEYS:
        return bearer(KEYS[who])
    kind, subject = who.split(":")
    return bearer(link_token(kind, subject))


CALLERS = (
    "none",
    "admin",
    "app",
    "read-only",
    "student:sam",
    "student:kim",
    "mentor:ana",
    "mentor:ben",
)


def expect(*codes: int) -> dict[str, int]:
    return dict(zip(CALLERS, codes, strict=True))


# method, path ({id} is Sam's booking), JSON body, expected status per caller
MATRIX: list[tuple[str, str, dict[str, Any] | None, dict[str, int]]] = [
    ("GET", "/v1/services", None, expect(401, 200, 200, 200, 200, 200, 200, 200)),
    (
        "GET",
        f"/v1/services/{SERVICE}/slots?tz=Asia/Kolkata&from=2027-03-02&days=1",
        None,
        expect(401, 200, 200, 200, 200, 200, 200, 200),
    ),
    (
        "POST",
        "/v1/bookings",
        {"service": SERVICE, "mentor": "ana", "student": "sam", "start": SECOND_SLOT.isoformat()},
        expect(401, 201, 201, 403, 201, 403, 403, 403),
    ),
    ("GET", "/v1/bookings/{id}", None, expect(401, 200, 200, 200, 200, 404, 200, 404)),
    ("GET", "/v1/bookings?student=sam", None, expect(401, 200, 200, 200, 200, 403, 200, 200)),
    ("GET", "/v1/bookings?mentor=ana", None, expect(401, 200, 200, 200, 200, 200, 200, 403)),
    ("POST", "/v1/bookings/{id}/cancel", {}, expect(401, 200, 200, 403, 200, 404, 200, 404)),
    (
        "POST",
        "/v1/bookings/{id}/reschedule",
        {"start": LATER_SLOT.isoformat()},
        expect(401, 200, 200, 403, 200, 404, 200, 404),
    ),
    ("GET", "/v1/students/sam/quota", None, expect(401, 200, 200, 200, 200, 403, 403, 403)),
    ("GET", "/v1/mentors/ana/calendars", None, expect(401, 200, 200, 200, 403, 403, 200, 403)),
    (
        "POST",
        "/v1/links",
        {"kind": "student", "id": "sam"},
        expect(401, 201, 201, 403, 403, 403, 403, 403),
    ),
]


@pytest.mark.parametrize("who", CALLERS)
@pytest.mark.parametrize(
    ("method", "path", "body", "expected"), MATRIX, ids=[f"{m} {p}" for m, p, _, _ in MATRIX]
)
def test_auth_matrix(
    api: TestClient,
    booking_id: str,
    who: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    expected: dict[str, int],
) -> None:
    response = api.request(
        method, path.replace("{id}", booking_id), json=body, headers=headers_for(who)
    )
    assert response.status_code == expected[who], response.text
    if response.status_code >= 400:
        assert set(response.json()) == {"error", "message"}


def test_student_link_lists_only_its_own_bookings(
    api: TestClient, seeded: Database, booking_id: str
) -> None:
    BookingService(seeded).book(BookingRequest(SERVICE, "ana", "kim", SECOND_SLOT), now=NOW)
    response = api.get("/v1/bookings", headers=headers_for("student:sam"))
    assert [row["student"] for row in response.json()] == ["sam"]
    mentor_view = api.get("/v1/bookings?student=kim", headers=headers_for("mentor:ben"))
    assert mentor_view.json() == []


@pytest.mark.parametrize(
    "token",
    [
        "wrong-key",
        link_token("student", "sam", now=NOW - timedelta(days=30)),  # expired
        sign_link(b"another-secret-key-0123456789", "student", "sam", NOW + timedelta(days=1)),
        "sl1.garbage.token",
    ],
    ids=["unknown-key", "expired-link", "forged-link", "malformed-link"],
)
def test_bad_credentials_are_401(api: TestClient, token: str) -> None:
    response = api.get("/v1/services", headers=bearer(token))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert token not in response.text


def test_services_list_their_mentors(api: TestClient) -> None:
    [service] = api.get("/v1/services", headers=headers_for("admin")).json()
    assert service["slug"] == SERVICE
    assert [m["id"] for m in service["mentors"]] == ["ana", "ben"]


def test_slots_have_the_cli_shape_in_the_asked_zone(api: TestClient) -> None:
    response = api.get(
        f"/v1/services/{SERVICE}/slots",
        params={"tz": "Asia/Kolkata", "from": "2027-03-02", "days": 1},
        headers=headers_for("app"),
    )
    slots = response.json()
    assert slots[0] == {
        "start": "2027-03-02T13:30:00+05:30",
        "end": "2027-03-02T14:30:00+05:30",
        "mentors": ["ana"],
    }
    assert all(slot["start"].endswith("+05:30") for slot in slots)
    assert any(slot["mentors"] == ["ana", "ben"] for slot in slots)


def test_slots_for_one_mentor(api: TestClient) -> None:
    params = {"tz": "UTC", "from": "2027-03-02", "days": 1, "mentor": "ben"}
    slots = api.get(
        f"/v1/services/{SERVICE}/slots", params=params, headers=headers_for("app")
    ).json()
    assert {tuple(slot["mentors"]) for slot in slots} == {("ben",)}


@pytest.mark.parametrize(
    ("params", "status", "words"),
    [
        ({"tz": "Mars/Olympus"}, 422, "unknown timezone"),
        ({"tz": "UTC", "days": 91}, 422, "days"),
        ({"tz": "UTC", "days": 0}, 422, "days"),
        ({"tz": "UTC", "from": "9999-12-31"}, 422, "between the years"),
        ({"tz": "UTC", "from": "yesterday"}, 422, "from"),
        ({"tz": "UTC", "mentor": "nobody"}, 404, "nobody"),
    ],
)
def test_slot_queries_are_validated(
    api: TestClient, params: dict[str, Any], status: int, words: str
) -> None:
    response = api.get(f"/v1/services/{SERVICE}/slots", params=params, headers=headers_for("app"))
    assert response.status_code == status
    assert words in response.json()["message"]


def test_unknown_service_is_404(api: TestClient) -> None:
    response = api.get("/v1/services/nope/slots?tz=UTC", headers=headers_for("app"))
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def _book(api: TestClient, start: str, key: str | None = None, student: str = "sam") -> Any:
    headers = headers_for("app") | ({"Idempotency-Key": key} if key else {})
    body = {"service": SERVICE, "mentor": "ana", "student": student, "start": start}
    return api.post("/v1/bookings", json=body, headers=headers)


def test_booking_is_created_with_offset_and_returned_in_utc(api: TestClient) -> None:
    response = _book(api, "2027-03-02T13:30:00+05:30")
    assert response.status_code == 201
    booking = response.json()
    assert (booking["start"], booking["status"], booking["student"]) == (
        "2027-03-02T08:00:00Z",
        "confirmed",
        "sam",
    )
    fetched = api.get(f"/v1/bookings/{booking['id']}", headers=headers_for("read-only"))
    assert fetched.json() == booking


def test_naive_start_is_refused(api: TestClient) -> None:
    response = _book(api, "2027-03-02T08:00:00")
    assert response.status_code == 422
    assert "start" in response.json()["message"]


def test_idempotency_key_returns_the_same_booking(api: TestClient) -> None:
    first = _book(api, FIRST_SLOT.isoformat(), key="order-1")
    again = _book(api, FIRST_SLOT.isoformat(), key="order-1")
    assert again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    other = _book(api, SECOND_SLOT.isoformat(), key="order-1")
    assert other.status_code == 409
    assert other.json()["error"] == "idempotency_conflict"


def test_taken_slot_is_409_with_reason(api: TestClient, booking_id: str) -> None:
    response = _book(api, FIRST_SLOT.isoformat(), student="kim")
    assert response.status_code == 409
    assert response.json()["error"] == "slot_unavailable"


def test_unknown_ids_are_404(api: TestClient) -> None:
    admin = headers_for("admin")
    assert api.get("/v1/bookings/" + "0" * 32, headers=admin).status_code == 404
    assert api.get("/v1/students/nobody/quota", headers=admin).status_code == 404
    assert api.get("/v1/mentors/nobody/calendars", headers=admin).status_code == 404
    assert api.get("/v1/bookings?student=nobody", headers=admin).status_code == 404
    assert _book(api, FIRST_SLOT.isoformat(), student="nobody").status_code == 404


def _quota(api: TestClient) -> dict[str, Any]:
    [row] = api.get("/v1/students/sam/quota", headers=headers_for("student:sam")).json()
    return dict(row)


def test_quota_has_the_cli_fields(api: TestClient, booking_id: str) -> None:
    assert _quota(api) == {
        "service": SERVICE,
        "remaining": 3,
        "unlimited": False,
        "used": 1,
        "period_start": "2027-03-01",
        "next_renewal": "2027-04-01",
        "expires": None,
    }


def test_early_student_cancel_refunds(api: TestClient, booking_id: str) -> None:
    response = api.post(
        f"/v1/bookings/{booking_id}/cancel",
        json={"reason": "exam"},
        headers=headers_for("student:sam"),
    )
    body = response.json()
    assert (body["status"], body["cancelled_by"], body["cancel_reason"], body["refunded"]) == (
        "cancelled",
        "student",
        "exam",
        True,
    )
    assert _quota(api)["remaining"] == 4
    again = api.post(f"/v1/bookings/{booking_id}/cancel", json={}, headers=headers_for("admin"))
    assert (again.status_code, again.json()["error"]) == (409, "not_cancellable")


@pytest.mark.parametrize(
    ("who", "by", "status"),
    [
        ("student:sam", "admin", 403),
        ("app", "admin", 403),
        ("mentor:ana", "student", 403),
        ("admin", "mentor", 200),
    ],
)
def test_cancel_cannot_impersonate(
    api: TestClient, booking_id: str, who: str, by: str, status: int
) -> None:
    response = api.post(
        f"/v1/bookings/{booking_id}/cancel", json={"by": by}, headers=headers_for(who)
    )
    assert response.status_code == status


def test_reschedule_moves_the_booking(api: TestClient, booking_id: str) -> None:
    response = api.post(
        f"/v1/bookings/{booking_id}/reschedule",
        json={"start": "2027-03-03T09:00:00+01:00"},
        headers=headers_for("student:sam"),
    )
    assert response.status_code == 200
    assert (response.json()["start"], response.json()["sequence"]) == ("2027-03-03T08:00:00Z", 1)


def test_upcoming_filter(api: TestClient, seeded: Database, booking_id: str) -> None:
    api.post(f"/v1/bookings/{booking_id}/cancel", json={}, headers=headers_for("admin"))
    everything = api.get("/v1/bookings?student=sam", headers=headers_for("app")).json()
    upcoming = api.get("/v1/bookings?student=sam&upcoming=true", headers=headers_for("app")).json()
    assert (len(everything), upcoming) == (1, [])


def test_calendar_status_never_shows_secrets(api: TestClient) -> None:
    response = api.get("/v1/mentors/ana/calendars", headers=headers_for("mentor:ana"))
    [calendar] = response.json()
    assert calendar["consecutive_failures"] == 2
    assert calendar["last_error"] == "401 from https://dav.example.org/ana/work/"
    assert "hunter2" not in response.text and "secret-sync-token" not in response.text
    assert set(calendar) == {
        "id",
        "provider",
        "name",
        "blocks_time",
        "is_destination",
        "last_success",
        "last_error",
        "consecutive_failures",
        "needs_reconnect",
    }


def test_created_link_opens_the_students_quota(api: TestClient) -> None:
    response = api.post(
        "/v1/links", json={"kind": "student", "id": "sam", "days": 3}, headers=headers_for("app")
    )
    assert response.status_code == 201
    url = response.json()["url"]
    assert url.startswith("http://127.0.0.1:8080/s/sl1.")
    assert response.json()["expires"].startswith("2027-03-04T06:00:00")
    token = url.rsplit("/", 1)[1]
    assert api.get("/v1/students/sam/quota", headers=bearer(token)).status_code == 200
    assert api.get("/v1/students/kim/quota", headers=bearer(token)).status_code == 403


def test_link_for_unknown_student_is_404(api: TestClient) -> None:
    response = api.post(
        "/v1/links", json={"kind": "student", "id": "ghost"}, headers=headers_for("admin")
    )
    assert response.status_code == 404


def test_openapi_document(api: TestClient) -> None:
    document = api.get("/openapi.json").json()
    assert document["openapi"].startswith("3.")
    assert "/v1/bookings/{booking_id}/cancel" in document["paths"]
    assert "HTTPBearer" in document["components"]["securitySchemes"]


def test_secret_key_never_in_links_response(api: TestClient) -> None:
    response = api.post(
        "/v1/links", json={"kind": "mentor", "id": "ana"}, headers=headers_for("admin")
    )
    assert SECRET.decode() not in response.text


def test_body_that_is_not_json_is_400_with_error_body(api: TestClient) -> None:
    response = api.post(
        "/v1/bookings",
        content=b"{not json",
        headers=headers_for("app") | {"Content-Type": "application/json"},
    )
    assert response.status_code in (400, 422)
    assert set(response.json()) == {"error", "message"}
