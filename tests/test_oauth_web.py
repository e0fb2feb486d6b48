"""The Google OAuth web flow from the mentor page, against the fake Google (consent, token
endpoint with PKCE and redirect_uri checks, calendarList): state, cookie, PKCE and storage."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from syncd.api import create_app, oauth_google
from syncd.api.auth import AuthError
from syncd.config import Config
from syncd.secrets import SecretBox
from syncd.store.db import Database
from syncd.store.models import Calendar, CalendarAccount
from tests.fake_google import FakeGoogle
from tests.test_api_helpers import NOW, link_token, seed, settings

KEY_MATERIAL = "oauth-web-test-key-0123456789abcdefghijkl"
CLIENT_ID, CLIENT_SECRET = "web-client.apps.example", "web-client-secret"
PUBLIC_URL = "http://testserver"


@pytest.fixture(scope="module")
def google() -> Iterator[FakeGoogle]:
    with FakeGoogle() as fake:
        fake.register_client(CLIENT_ID, CLIENT_SECRET)
        fake.add_calendar("ana@example.org", summary="Ana", time_zone="Europe/Madrid", primary=True)
        fake.add_calendar("team@example.org", summary="Team")
        yield fake


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def client(
    db: Database, google: FakeGoogle, tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    monkeypatch.delenv("SYNCD_SECRET_KEY", raising=False)
    seed(db)
    secrets_file = tmp_path / "client.json"
    web = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "auth_uri": google.auth_uri,
        "token_uri": google.token_uri,
    }
    secrets_file.write_text(json.dumps({"web": web}), encoding="utf-8")
    config = Config(
        sections={
            "security": {"secret_key": KEY_MATERIAL},
            "google": {
                "client_secrets_file": str(secrets_file),
                "api_endpoint": google.api_endpoint,
                "token_uri": google.token_uri,
            },
        }
    )
    chosen = dataclasses.replace(settings(public_url=PUBLIC_URL), config=config, clock=clock)
    with TestClient(create_app(db, chosen), base_url=PUBLIC_URL) as test_client:
        yield test_client


def start(client: TestClient, mentor: str = "ana") -> tuple[str, dict[str, str]]:
    """Open the connect link; the consent URL and its query."""
    response = client.get(
        f"/m/{link_token('mentor', mentor)}/google/connect", follow_redirects=False
    )
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    return location, {
        name: values[0] for name, values in parse_qs(urlsplit(location).query).items()
    }


def consent(location: str) -> str:
    """The fake Google approves at once and sends the browser back: the callback path+query."""
    answer = httpx.get(location, follow_redirects=False, timeout=5.0)
    assert answer.status_code == 302
    back = urlsplit(answer.headers["location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == PUBLIC_URL + oauth_google.CALLBACK_PATH
    return f"{back.path}?{back.query}"


def accounts(db: Database) -> list[CalendarAccount]:
    with db.session() as session:
        return list(session.query(CalendarAccount).filter_by(provider="google").all())


def test_the_whole_flow_stores_the_grant_encrypted(
    client: TestClient, db: Database, google: FakeGoogle
) -> None:
    earlier = len(google.requests_to("POST", "/token"))  # the fake is shared by the module
    location, query = start(client)
    assert location.startswith(google.auth_uri + "?")
    assert query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == PUBLIC_URL + "/oauth/google/callback"
    assert query["code_challenge_method"] == "S256"
    assert query["response_type"] == "code" and query["access_type"] == "offline"
    assert "sl1." not in location  # the mentor's link never goes to Google

    response = client.get(consent(location), follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == (
        f"{PUBLIC_URL}/m/{link_token('mentor', 'ana')}?google=connected"
    )
    # PKCE: the verifier sent to the token endpoint hashes to the challenge sent to consent.
    new_requests = google.requests_to("POST", "/token")[earlier:]
    [exchange] = [r for r in new_requests if "code" in (r.body or {})]
    verifier = exchange.body["code_verifier"][0]
    digest = hashlib.sha256(verifier.encode()).digest()
    assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == query["code_challenge"]
    assert verifier not in location

    [account] = accounts(db)
    assert account.secret is not None and "refresh" not in account.secret
    stored = json.loads(SecretBox(KEY_MATERIAL).decrypt(account.secret).reveal())
    assert stored["refresh_token"].startswith("1//refresh-")
    assert account.username == "ana@example.org"
    with db.session() as session:
        names = [c.name for c in session.query(Calendar).filter_by(account_id=account.id)]
    assert names == ["Ana"]  # the primary calendar; the mentor may add others later
    page = client.get(response.headers["location"]).text
    assert "Google Calendar is connected" in page
    assert stored["refresh_token"] not in page


def test_a_tampered_state_is_refused(client: TestClient, db: Database) -> None:
    location, query = start(client)
    back = consent(location)
    tampered = back.replace(query["state"][:5], "AAAAA", 1)
    response = client.get(tampered, follow_redirects=False)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_state"
    assert accounts(db) == []


def test_a_state_from_another_browser_is_refused(
    client: TestClient, db: Database, google: FakeGoogle
) -> None:
    location, _ = start(client)
    back = consent(location)
    client.cookies.clear()  # the callback arrives in a browser that did not start the flow
    response = client.get(back, follow_redirects=False)
    assert response.status_code == 400
    assert "not started in this browser" in response.json()["message"]
    assert accounts(db) == []


def test_an_old_state_is_refused(client: TestClient, db: Database, clock: Clock) -> None:
    location, _ = start(client)
    back = consent(location)
    clock.now = NOW + oauth_google.STATE_TTL + timedelta(seconds=1)
    response = client.get(back, follow_redirects=False)
    assert response.status_code == 400
    assert "took too long" in response.json()["message"]


def test_a_wrong_pkce_verifier_fails_at_the_token_endpoint(
    client: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    location, _ = start(client)
    back = consent(location)
    monkeypatch.setattr(oauth_google, "code_verifier", lambda secret, nonce: "x" * 43)
    response = client.get(back, follow_redirects=False)
    assert response.headers["location"].endswith("?google=failed")
    assert accounts(db) == []


def test_the_mentor_declining_connects_nothing(client: TestClient, db: Database) -> None:
    _, query = start(client)
    response = client.get(
        f"/oauth/google/callback?error=access_denied&state={query['state']}", follow_redirects=False
    )
    assert response.headers["location"].endswith("?google=denied")
    assert accounts(db) == []


def test_state_verification_unit() -> None:
    secret = b"0123456789abcdef0123"
    state = oauth_google.sign_state(secret, "ana", "nonce1", NOW + timedelta(minutes=1))
    assert oauth_google.verify_state(secret, state, NOW) == ("ana", "nonce1")
    with pytest.raises(AuthError):
        oauth_google.verify_state(b"another-secret-key-000", state, NOW)
    with pytest.raises(AuthError):
        oauth_google.verify_state(secret, "garbage", NOW)
    assert len(oauth_google.code_verifier(secret, "n")) == 43


def test_connect_without_a_google_client_is_refused(db: Database) -> None:
    seed(db)
    with TestClient(create_app(db, settings())) as plain:
        response = plain.get(
            f"/m/{link_token('mentor', 'ana')}/google/connect", follow_redirects=False
        )
    assert response.status_code == 422
    assert "not set up" in response.json()["message"]


def test_a_student_link_cannot_start_the_flow(client: TestClient) -> None:
    response = client.get(
        f"/m/{link_token('student', 'sam')}/google/connect", follow_redirects=False
    )
    assert response.status_code == 403
