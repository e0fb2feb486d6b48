"""`make demo --once` end to end: Radicale, sync, slots, a booking, its event and its invite.

The demo runs as a subprocess (as `make demo` does) against a temporary state folder, twice:
the second run must reuse everything the first one created.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("radicale")

DEMO_TIMEOUT_S = 90
BOOKED = re.compile(r"^\$ syncd book .*\n  ([0-9a-f]{32})$", re.MULTILINE)
REUSED = re.compile(r"already has an upcoming session with ana: ([0-9a-f]{32})$", re.MULTILINE)
SLOT_LINE = re.compile(r"^\s.*\bana: (\d\d:\d\d ?)+$", re.MULTILINE)


def run_demo(state: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNCD_", "DEMO_"))}
    done = subprocess.run(
        [sys.executable, "-m", "syncd.demo", "--state", str(state), "--once"],
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_demo_once_shows_the_whole_product_and_is_idempotent(tmp_path: Path) -> None:
    state = tmp_path / "demo-state"
    first = run_demo(state)

    assert SLOT_LINE.search(first), first
    assert re.search(r"ana: \d+ slots, 0 overlapping the seeded busy events", first)
    booked = BOOKED.search(first)
    assert booked, first
    booking_id = booked.group(1)
    assert "(fetched over CalDAV): 1 event(s)" in first
    assert f"UID:     syncd-{booking_id}@syncd" in first
    assert "Subject: Invitation: 1-on-1 mentoring with Ana Ruiz" in first
    assert [p.name for p in (state / "mail").glob("*.eml")] == [
        f"syncd-{booking_id}.0.request_localhost.eml"
    ]
    assert "/s/sl1." in first and "/m/sl1." in first
    assert (state / "secret-key").stat().st_mode & 0o777 == 0o600

    second = run_demo(state)

    assert "added mentor" not in second and "grant " not in second
    reused = REUSED.search(second)
    assert reused and reused.group(1) == booking_id, second
    assert "(fetched over CalDAV): 1 event(s)" in second
    assert len(list((state / "mail").glob("*.eml"))) == 1
    assert "calendar remove" not in second
