"""Seed data, keys and clients shared by the API, schemathesis and browser tests (no tests here)."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta

from fastapi.testclient import TestClient

from syncd import directory, quotas
from syncd.api import ApiKey, ApiSettings, create_app
from syncd.api.settings import KeyRole
from syncd.links import sign_link
from syncd.store.db import Database
from syncd.store.models import Calendar

NOW = datetime(2027, 3, 1, 6, 0, tzinfo=UTC)  # a Monday morning
SECRET = b"test-secret-key-0123456789abcdef"
KEYS: dict[KeyRole, str] = {
    "admin": "admin-key-123",
    "app": "app-key-456",
    "read-only": "ro-key-789",
}
SERVICE = "mentoring"
MENTORS = ("ana", "ben")
STUDENTS = ("sam", "kim")
# Ana works 09:00-17:00 Madrid (UTC+1 in March 2027): 08:00 UTC is her first start.
FIRST_SLOT = datetime(2027, 3, 2, 8, 0, tzinfo=UTC)


def settings(now: datetime = NOW, public_url: str = "http://127.0.0.1:8080") -> ApiSettings:
    return ApiSettings(
        api_keys=tuple(
            ApiKey(
                name=f"{role}-key", role=role, key_sha256=hashlib.sha256(key.encode()).hexdigest()
            )
            for role, key in KEYS.items()
        ),
        secret_key=SECRET,
        public_url=public_url,
        clock=lambda: now,
    )


def seed(db: Database, today: date = date(2027, 3, 1)) -> None:
    with db.write_session() as session:
        directory.add_mentor(
            session, "ana", name="Ana Ruiz", email="ana@example.org", timezone="Europe/Madrid"
        )
        directory.add_mentor(
            session, "ben", name="Ben Okafor", email="ben@example.org", timezone="Africa/Lagos"
        )
        directory.add_service(
            session, SERVICE, name="Mentoring session", duration=60, horizon_days=60
        )
        for student, tz in zip(STUDENTS, ("Asia/Kolkata", "America/New_York"), strict=True):
            directory.add_student(
                session, student, name=student.title(), email=f"{student}@example.org", timezone=tz
            )
        session.flush()
        directory.set_weekly_hours(session, "ana", ["mon-fri 09:00-17:00"])
        directory.set_weekly_hours(session, "ben", ["mon-fri 10:00-12:00"])
        directory.assign_service(session, SERVICE, list(MENTORS))
        service = directory.require_service(session, SERVICE)
        for student in STUDENTS:
            quotas.grant(
                session,
                directory.require_student(session, student),
                service=service,
                sessions=4,
                renewal="monthly",
                anchor=date(2027, 3, 1),
                today=today,
            )
        session.add(
            Calendar(
                mentor_id="ana",
                provider="caldav",
                remote_id="https://dav.example.org/ana/work/",
                name="Work",
                sync_state="secret-sync-token",
                last_error="401 from https://ana:hunter2@dav.example.org/ana/work/",
                consecutive_failures=2,
            )
        )


def link_token(kind: str, subject: str, now: datetime = NOW, days: int = 7) -> str:
    return sign_link(SECRET, kind, subject, now + timedelta(days=days))  # type: ignore[arg-type]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def client(db: Database, now: datetime = NOW) -> TestClient:
    return TestClient(create_app(db, settings(now)))
