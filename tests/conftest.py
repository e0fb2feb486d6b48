"""Shared fixtures: a fresh database per test on SQLite, and on PostgreSQL when
SYNCD_TEST_POSTGRES_URL is set (each test gets its own schema, dropped afterwards)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import Engine, create_engine, text

from syncd.store.db import Database, normalise_url

POSTGRES_URL = os.environ.get("SYNCD_TEST_POSTGRES_URL")

BACKENDS = [
    "sqlite",
    pytest.param(
        "postgresql",
        marks=[
            pytest.mark.postgres,
            pytest.mark.skipif(not POSTGRES_URL, reason="SYNCD_TEST_POSTGRES_URL is not set"),
        ],
    ),
]


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's config, database or state directory."""
    for name in ("SYNCD_CONFIG", "SYNCD_DATABASE_URL", "STATE_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


@pytest.fixture(scope="session")
def _postgres_ready() -> None:
    assert POSTGRES_URL
    engine = create_engine(normalise_url(POSTGRES_URL))
    with engine.begin() as connection:
        connection.execute(text("CREATE EXTENSION IF NOT EXISTS btree_gist"))
    engine.dispose()


@pytest.fixture
def postgres_schema_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A URL whose connections live in a new schema; the schema is dropped afterwards and
    the test fails if it left a connection open."""
    if not POSTGRES_URL:
        pytest.skip("SYNCD_TEST_POSTGRES_URL is not set")
    request.getfixturevalue("_postgres_ready")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(normalise_url(POSTGRES_URL))
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in POSTGRES_URL else "?"
    options = quote(f"-csearch_path={schema},public")
    url = f"{normalise_url(POSTGRES_URL)}{separator}options={options}&application_name={schema}"
    try:
        yield url
    finally:
        leaked = _open_connections(admin, schema)
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
        assert leaked == 0, f"{leaked} PostgreSQL connection(s) left open by the test"


def _open_connections(admin: Engine, application_name: str) -> int:
    """Connections still open under that name; a closed one may take a moment to disappear."""
    deadline = time.monotonic() + 5
    while True:
        with admin.connect() as connection:
            count = connection.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"),
                {"name": application_name},
            ).scalar_one()
        if count == 0 or time.monotonic() > deadline:
            return int(count)
        time.sleep(0.05)


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'syncd-test.db'}"
    return str(request.getfixturevalue("postgres_schema_url"))


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    database.upgrade()
    try:
        yield database
    finally:
        database.dispose()


# -- a small seeded world used by booking, quota and CLI tests ---------------------------------

MONDAY = "2027-03-01"  # a Monday; Europe/Madrid is UTC+1 then, DST starts 2027-03-28


@pytest.fixture
def world(db: Database) -> Database:
    """Mentors ana (Madrid, Mon-Fri 09-17) and ben (New York, Mon-Fri 09-12), service `intro`
    (60 min, 15 min buffer after), students stu (Kolkata) and kim (Madrid)."""
    from syncd import directory

    with db.write_session() as session:
        directory.add_mentor(
            session, "ana", name="Ana", email="ana@example.org", timezone="Europe/Madrid"
        )
        directory.set_weekly_hours(session, "ana", ["mon-fri 09:00-17:00"])
        directory.add_mentor(
            session, "ben", name="Ben", email="ben@example.org", timezone="America/New_York"
        )
        directory.set_weekly_hours(session, "ben", ["mon-fri 09:00-12:00"])
        directory.add_service(session, "intro", name="Intro call", duration=60, buffer_after=15)
        directory.assign_service(session, "intro", ["ana", "ben"])
        directory.add_student(
            session, "stu", name="Stu", email="stu@example.org", timezone="Asia/Kolkata"
        )
        directory.add_student(
            session, "kim", name="Kim", email="kim@example.org", timezone="Europe/Madrid"
        )
    return db
