"""The admin CLI end to end, on SQLite and PostgreSQL: names, flags, outputs and errors."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from click.testing import CliRunner, Result
from freezegun import freeze_time

from syncd.cli import cli

Run = Callable[..., Result]


@pytest.fixture
def run(db_url: str) -> Run:
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(cli, ["--database", db_url, *args], catch_exceptions=False)

    return invoke


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output + result.stderr
    return result.stdout


def refused(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def seeded(run: Run) -> Run:
    ok(run("db", "upgrade"))
    ok(
        run(
            "mentor",
            "add",
            "ana",
            "--name",
            "Ana",
            "--email",
            "ana@example.org",
            "--timezone",
            "Europe/Madrid",
        )
    )
    ok(run("mentor", "hours", "ana", "mon-fri 09:00-17:00"))
    ok(
        run(
            "mentor",
            "add",
            "ben",
            "--name",
            "Ben",
            "--email",
            "ben@example.org",
            "--timezone",
            "America/New_York",
        )
    )
    ok(run("mentor", "hours", "ben", "mon-fri 09:00-12:00"))
    ok(
        run(
            "service",
            "add",
            "intro",
            "--name",
            "Intro call",
            "--duration",
            "60",
            "--buffer-after",
            "15",
        )
    )
    ok(run("service", "assign", "intro", "ana", "ben"))
    ok(
        run(
            "student",
            "add",
            "stu",
            "--name",
            "Stu",
            "--email",
            "stu@example.org",
            "--timezone",
            "Asia/Kolkata",
        )
    )
    return run


def slots_json(run: Run, *extra: str) -> list[dict[str, object]]:
    return json.loads(
        ok(
            run(
                "slots",
                "intro",
                "--tz",
                "Asia/Kolkata",
                "--from",
                "2027-03-01",
                "--days",
                "1",
                "--json",
                *extra,
            )
        )
    )


@freeze_time("2027-02-26T12:00:00Z")
def test_slots_json_is_the_union_in_the_students_zone(seeded: Run) -> None:
    slots = slots_json(seeded)
    # Ana: 08:00-16:00 UTC, starts 08:00..15:00 (29); Ben: 14:00-17:00 UTC, starts 14:00..16:00 (9).
    assert len(slots) == 24 + 5 + 4
    assert slots[0] == {
        "start": "2027-03-01T13:30:00+05:30",
        "end": "2027-03-01T14:30:00+05:30",
        "mentors": ["ana"],
    }
    shared = next(s for s in slots if s["start"] == "2027-03-01T19:30:00+05:30")
    assert shared["mentors"] == ["ana", "ben"]
    assert slots[-1] == {
        "start": "2027-03-01T21:30:00+05:30",
        "end": "2027-03-01T22:30:00+05:30",
        "mentors": ["ben"],
    }
    assert [s["start"] for s in slots] == sorted(s["start"] for s in slots)  # type: ignore[type-var]


@freeze_time("2027-02-26T12:00:00Z")
def test_slots_text_groups_by_the_students_local_date(seeded: Run) -> None:
    out = ok(
        seeded(
            "slots",
            "intro",
            "--tz",
            "America/Los_Angeles",
            "--from",
            "2027-03-01",
            "--days",
            "2",
            "--mentor",
            "ben",
        )
    )
    lines = out.splitlines()
    assert lines[0] == "Monday 01 March 2027 (America/Los_Angeles)"
    assert lines[1].split() == ["06:00-07:00", "ben"]
    assert "Tuesday 02 March 2027 (America/Los_Angeles)" in lines


@freeze_time("2027-02-26T12:00:00Z")
def test_booking_flow_excludes_booked_time_and_spends_quota(seeded: Run) -> None:
    assert "quota exhausted" in refused(
        seeded(
            "book",
            "intro",
            "--mentor",
            "ana",
            "--student",
            "stu",
            "--start",
            "2027-03-01T09:00:00+01:00",
        )
    )
    ok(seeded("quota", "grant", "stu", "intro", "--sessions", "2", "--renew", "monthly"))
    booking_id = ok(
        seeded(
            "book",
            "intro",
            "--mentor",
            "ana",
            "--student",
            "stu",
            "--start",
            "2027-03-01T09:00:00+01:00",
        )
    ).strip()
    assert len(booking_id) == 32
    ana = [s for s in slots_json(seeded, "--mentor", "ana")]
    # The booking blocks 08:00-09:15 UTC (15 min buffer after): starts 08:00..09:00 are gone.
    assert len(ana) == 29 - 5
    assert ana[0]["start"] == "2027-03-01T14:45:00+05:30"

    again = refused(
        seeded(
            "book",
            "intro",
            "--mentor",
            "ana",
            "--student",
            "stu",
            "--start",
            "2027-03-01T08:30:00Z",
        )
    )
    assert "slot not available" in again

    quota = json.loads(ok(seeded("quota", "show", "stu", "--json")))
    assert quota == [
        {
            "service": "intro",
            "remaining": 1,
            "unlimited": False,
            "used": 1,
            "period_start": "2027-02-26",
            "next_renewal": "2027-03-26",
            "expires": None,
        }
    ]
    listed = json.loads(ok(seeded("bookings", "--student", "stu", "--upcoming", "--json")))
    assert [b["id"] for b in listed] == [booking_id]
    assert listed[0]["start"] == "2027-03-01T08:00:00Z"

    moved = json.loads(
        ok(seeded("reschedule", booking_id, "--start", "2027-03-02T10:00:00+01:00", "--json"))
    )
    assert (moved["id"], moved["start"], moved["sequence"]) == (
        booking_id,
        "2027-03-02T09:00:00Z",
        1,
    )

    assert "(refunded)" in ok(seeded("cancel", booking_id, "--by", "student", "--reason", "ill"))
    assert json.loads(ok(seeded("quota", "show", "stu", "--json")))[0]["remaining"] == 2
    assert json.loads(ok(seeded("bookings", "--student", "stu", "--upcoming", "--json"))) == []
    history = json.loads(ok(seeded("bookings", "--mentor", "ana", "--json")))
    assert history[0]["status"] == "cancelled"
    assert history[0]["cancelled_by"] == "student"
    assert history[0]["cancel_reason"] == "ill"


@freeze_time("2027-02-26T12:00:00Z")
def test_book_json_prints_the_booking(seeded: Run) -> None:
    ok(seeded("quota", "grant", "stu", "intro", "--unlimited"))
    data = json.loads(
        ok(
            seeded(
                "book",
                "intro",
                "--mentor",
                "ben",
                "--student",
                "stu",
                "--start",
                "2027-03-01T14:00:00Z",
                "--json",
            )
        )
    )
    assert data["mentor"] == "ben"
    assert data["end"] == "2027-03-01T15:00:00Z"
    assert data["status"] == "confirmed"


def test_mentor_list_json_and_overrides(seeded: Run) -> None:
    ok(seeded("mentor", "override", "ana", "2027-03-03"))
    ok(seeded("mentor", "override", "ana", "2027-03-04", "10:00-12:00", "14:00-15:00"))
    ok(seeded("mentor", "hours", "ben", "sat 10:00-12:00", "sun 22:00-02:00"))
    mentors = {m["id"]: m for m in json.loads(ok(seeded("mentor", "list", "--json")))}
    assert mentors["ana"]["overrides"] == [
        "2027-03-03 unavailable",
        "2027-03-04 10:00-12:00",
        "2027-03-04 14:00-15:00",
    ]
    assert mentors["ben"]["hours"] == ["sat 10:00-12:00", "sun 22:00-02:00"]
    assert mentors["ben"]["timezone"] == "America/New_York"
    assert mentors["ana"]["status"] == "active"


@freeze_time("2027-02-26T12:00:00Z")
def test_override_changes_slots(seeded: Run) -> None:
    ok(seeded("mentor", "override", "ana", "2027-03-01", "10:00-11:00"))
    ana = slots_json(seeded, "--mentor", "ana")
    assert [s["start"] for s in ana] == ["2027-03-01T14:30:00+05:30"]  # 09:00-10:00 UTC only


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            (
                "mentor",
                "add",
                "x",
                "--name",
                "X",
                "--email",
                "x@example.org",
                "--timezone",
                "Mars/Olympus",
            ),
            "unknown timezone",
        ),
        (("mentor", "hours", "nobody", "mon 09:00-10:00"), "unknown mentor"),
        (("mentor", "hours", "ana", "mon 10:00"), "invalid time range"),
        (("mentor", "override", "ana", "2027-02-30"), "invalid date"),
        (("slots", "intro", "--tz", "Nowhere/City"), "unknown timezone"),
        (("slots", "nope", "--tz", "UTC"), "unknown service"),
        (("slots", "intro", "--tz", "UTC", "--days", "400"), "days must be between"),
        (
            (
                "book",
                "intro",
                "--mentor",
                "ana",
                "--student",
                "stu",
                "--start",
                "2027-03-01T09:00:00",
            ),
            "no offset",
        ),
        (
            (
                "book",
                "intro",
                "--mentor",
                "zed",
                "--student",
                "stu",
                "--start",
                "2027-03-01T09:00:00Z",
            ),
            "unknown mentor",
        ),
        (("cancel", "f" * 32), "unknown booking"),
        (("service", "add", "bad", "--name", "B", "--duration", "0"), "duration"),
        (("quota", "grant", "ghost", "intro", "--sessions", "1"), "unknown student"),
        (
            (
                "mentor",
                "add",
                "ana",
                "--name",
                "A",
                "--email",
                "a@example.org",
                "--timezone",
                "UTC",
            ),
            "already exists",
        ),
    ],
)
def test_errors_are_one_clear_line(seeded: Run, args: tuple[str, ...], fragment: str) -> None:
    assert fragment in refused(seeded(*args))


def test_mentor_status_controls_bookability(seeded: Run) -> None:
    ok(seeded("mentor", "status", "ben", "inactive"))
    with freeze_time("2027-02-26T12:00:00Z"):
        assert all("ben" not in s["mentors"] for s in slots_json(seeded))  # type: ignore[operator]
        ok(seeded("quota", "grant", "stu", "intro", "--unlimited"))
        line = refused(
            seeded(
                "book",
                "intro",
                "--mentor",
                "ben",
                "--student",
                "stu",
                "--start",
                "2027-03-01T14:00:00Z",
            )
        )
    assert "not bookable" in line


def test_commands_upgrade_an_empty_database_and_say_so(run: Run) -> None:
    result = run("mentor", "list", "--json")
    assert result.exit_code == 0
    assert "upgrading" in result.stderr
    assert json.loads(result.stdout) == []


def test_no_show_keeps_the_session_spent(seeded: Run) -> None:
    with freeze_time("2027-02-26T12:00:00Z"):
        ok(seeded("quota", "grant", "stu", "intro", "--sessions", "1"))
        booking_id = ok(
            seeded(
                "book",
                "intro",
                "--mentor",
                "ana",
                "--student",
                "stu",
                "--start",
                "2027-03-01T09:00:00+01:00",
            )
        ).strip()
        assert "cannot be marked no-show" in refused(
            seeded("no-show", booking_id)
        )  # not started yet
    with freeze_time("2027-03-01T10:00:00Z"):
        assert "no-show" in ok(seeded("no-show", booking_id))
        [booking] = json.loads(ok(seeded("bookings", "--student", "stu", "--json")))
        assert booking["status"] == "no_show"
        assert json.loads(ok(seeded("quota", "show", "stu", "--json")))[0]["remaining"] == 0
