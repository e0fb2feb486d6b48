"""`syncd calendar ...` and `syncd secret generate` end to end: CLI → services → real Radicale."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from syncd.cli import cli
from syncd.store.db import Database
from syncd.store.models import CalendarAccount
from tests.servers import DavServer, make_calendar, put_object, radicale_server
from tests.test_sync import KEY, at, timed

Run = Callable[..., Result]
PASSWORD = "correct horse battery"


@pytest.fixture
def run(world: Database, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Run:
    monkeypatch.setenv("SYNCD_SECRET_KEY", KEY)
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(
            cli, ["--database", db_url, *args], input=input, catch_exceptions=False
        )

    return invoke


@pytest.fixture
def server() -> Iterator[DavServer]:
    with radicale_server(auth=("ana", PASSWORD)) as running:
        yield running


@pytest.fixture
def password_file(tmp_path: Path) -> str:
    path = tmp_path / "password"
    path.write_text(PASSWORD + "\n")
    return str(path)


def test_add_list_sync_set_remove(
    run: Run, world: Database, server: DavServer, password_file: str
) -> None:
    work = make_calendar(server, "work", timezone="Europe/Madrid")
    make_calendar(server, "family")
    put_object(server, f"{work}a.ics", timed("a", at(1, 9)))
    added = run("calendar", "add", "ana", "caldav", server.principal_url, "--username", "ana",
                "--password-file", password_file, "--destination", work)  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "found 2 calendar(s)" in added.output and "destination" in added.output
    with world.session() as session:
        [account] = session.query(CalendarAccount).all()
        assert account.secret and PASSWORD not in account.secret

    listed = json.loads(run("calendar", "list", "ana", "--json").output)
    assert {c["name"] for c in listed} == {"work", "family"}
    work_row = next(c for c in listed if c["name"] == "work")
    assert work_row["is_destination"] and work_row["timezone"] == "Europe/Madrid"
    assert work_row["last_success"] is None and not work_row["needs_reconnect"]

    synced = run("calendar", "sync", str(work_row["id"]))
    assert synced.exit_code == 0 and "full, 1 changed" in synced.output
    after = json.loads(run("calendar", "list", "--json").output)
    assert next(c for c in after if c["id"] == work_row["id"])["last_success"]

    family_id = next(c["id"] for c in listed if c["name"] == "family")
    assert run("calendar", "set", str(family_id), "--no-blocks", "--destination").exit_code == 0
    changed = {c["id"]: c for c in json.loads(run("calendar", "list", "--json").output)}
    assert not changed[family_id]["blocks_time"] and changed[family_id]["is_destination"]
    assert not changed[work_row["id"]]["is_destination"]

    assert run("calendar", "remove", str(family_id)).exit_code == 0
    assert len(json.loads(run("calendar", "list", "--json").output)) == 1


def test_wrong_password_is_refused_and_nothing_is_saved(
    run: Run, server: DavServer, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("nope")
    result = run("calendar", "add", "ana", "caldav", server.principal_url,
                                 "--username", "ana", "--password-file", str(wrong))  # fmt: skip
    assert result.exit_code == 1 and "rejected the credentials" in result.output
    assert "nope" not in result.output
    assert json.loads(run("calendar", "list", "--json").output) == []


def test_password_from_environment_and_reconnect_updates_the_account(
    run: Run, world: Database, server: DavServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_calendar(server, "work")
    monkeypatch.setenv("ANA_DAV_PASSWORD", PASSWORD)
    args = ("calendar", "add", "ana", "caldav", "--url", server.principal_url, "--username", "ana",
            "--password-env", "ANA_DAV_PASSWORD")  # fmt: skip
    assert run(*args).exit_code == 0
    assert run(*args).exit_code == 0  # connecting again updates, never duplicates
    with world.session() as session:
        assert session.query(CalendarAccount).count() == 1
    assert len(json.loads(run("calendar", "list", "--json").output)) == 1


def test_password_options_are_required_exactly_once(run: Run, server: DavServer) -> None:
    result = run("calendar", "add", "ana", "caldav", server.principal_url, "--username", "ana")
    assert result.exit_code == 1 and "--password-file" in result.output


def test_missing_secret_key_is_a_clear_error(
    run: Run, server: DavServer, password_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SYNCD_SECRET_KEY")
    result = run("calendar", "add", "ana", "caldav", server.principal_url, "--username", "ana",
                 "--password-file", password_file)  # fmt: skip
    assert result.exit_code == 1 and "syncd secret generate" in result.output


def test_secret_generate_prints_a_usable_key() -> None:
    from syncd.secrets import SecretBox

    result = CliRunner().invoke(cli, ["secret", "generate"])
    key = result.output.strip()
    assert result.exit_code == 0 and len(key) == 44
    assert SecretBox(key).decrypt(SecretBox(key).encrypt("x")).reveal() == "x"


def test_top_level_sync_pulls_the_mentors_calendars(
    run: Run, server: DavServer, password_file: str
) -> None:
    work = make_calendar(server, "work")
    put_object(server, f"{work}a.ics", timed("a", at(1, 9)))
    assert run("calendar", "add", "ana", "caldav", "--url", work, "--username", "ana",
               "--password-file", password_file).exit_code == 0  # fmt: skip
    first = run("sync", "--mentor", "ana")
    assert first.exit_code == 0 and "full, 1 changed" in first.stdout
    again = run("sync")
    assert again.exit_code == 0 and "incremental, 0 changed" in again.stdout


def test_book_refuses_when_the_mentors_calendar_cannot_be_asked(
    run: Run, world: Database, password_file: str
) -> None:
    """The live check before confirming: default policy refuses when the server is down."""
    with radicale_server(auth=("ana", PASSWORD)) as doomed:
        work = make_calendar(doomed, "work")
        assert run("calendar", "add", "ana", "caldav", "--url", work, "--username", "ana",
                   "--password-file", password_file).exit_code == 0  # fmt: skip
        assert run("quota", "grant", "kim", "intro", "--unlimited").exit_code == 0
    start = _next_weekday_at(10)
    refused = run("book", "intro", "--mentor", "ana", "--student", "kim", "--start", start)
    assert refused.exit_code == 1
    assert "cannot be reached" in refused.stderr
    assert json.loads(run("bookings", "--json").stdout) == []


def _next_weekday_at(hour_utc: int) -> str:
    from datetime import UTC, datetime, timedelta

    day = datetime.now(UTC).date() + timedelta(days=2)
    while day.weekday() > 4:
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, hour_utc, tzinfo=UTC).isoformat()
