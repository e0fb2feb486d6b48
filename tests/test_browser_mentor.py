"""End to end in Debian's Chromium: a mentor edits hours and connects a CalDAV calendar on a real
Radicale from their page link, then makes it the calendar that receives sessions."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.api import create_app
from syncd.config import Config
from syncd.store.db import Database
from syncd.store.models import Calendar, CalendarAccount
from tests.browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    STEP_TIMEOUT_MS,
    needs_chromium,
    served,
)
from tests.servers import DavServer, make_calendar, radicale_server
from tests.test_api_helpers import link_token, seed, settings

README_SCREENSHOT = Path("docs/screenshots/mentor-page.png")
KEY_MATERIAL = "browser-mentor-test-key-0123456789abcdefgh"
DAV_USER, DAV_PASSWORD = "ana", "app-password-for-syncd"

pytestmark = needs_chromium
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture
def radicale() -> Iterator[DavServer]:
    with radicale_server(auth=(DAV_USER, DAV_PASSWORD), username=DAV_USER) as server:
        make_calendar(server, "lessons", timezone="Europe/Madrid")
        make_calendar(server, "personal")
        yield server


@pytest.fixture
def database() -> Iterator[Database]:
    with tempfile.TemporaryDirectory(prefix="syncd-browser-mentor-") as directory:
        db = Database(f"sqlite:///{Path(directory) / 'browser.db'}")
        db.upgrade()
        seed(db)
        try:
            yield db
        finally:
            db.dispose()


@pytest.fixture
def server_url(database: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The app served by uvicorn on 127.0.0.1 in a thread; private CalDAV allowed, because
    Radicale listens on 127.0.0.1."""
    monkeypatch.delenv("SYNCD_SECRET_KEY", raising=False)
    config = Config(sections={"security": {"secret_key": KEY_MATERIAL}})
    chosen = dataclasses.replace(settings(), config=config, allow_private_caldav=True)
    with served(create_app(database, chosen)) as url:
        yield url


def test_mentor_edits_hours_and_connects_caldav(
    server_url: str, radicale: DavServer, database: Database
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 390, "height": 844}).new_page()
            page.set_default_timeout(STEP_TIMEOUT_MS)
            page.goto(f"{server_url}/m/{link_token('mentor', 'ana')}")
            expect = sync_api.expect
            expect(page.locator("#hours-mon")).to_have_value("09:00-17:00")
            expect(page.locator("#calendars")).to_contain_text("Work (CalDAV)")

            # Weekly hours: Saturday mornings too, and Friday ends early.
            page.get_by_label("Saturday").fill("10:00-12:00")
            page.get_by_label("Friday").fill("09:00-13:00")
            page.get_by_role("button", name="Save weekly hours").click()
            expect(page.locator("#status")).to_have_text("Weekly hours saved.")
            expect(page.locator("#hours-sat")).to_have_value("10:00-12:00")

            # A day off.
            page.get_by_label("Date", exact=True).fill("2027-03-10")
            page.get_by_role("button", name="Save this date").click()
            expect(page.locator("#overrides")).to_contain_text("unavailable")

            # CalDAV: tested live against Radicale before saving.
            page.get_by_label("Server or calendar URL").fill(radicale.principal_url)
            page.get_by_label("User name").fill(DAV_USER)
            page.get_by_label("App password").fill(DAV_PASSWORD)
            page.get_by_role("button", name="Test and connect").click()
            expect(page.locator("#status")).to_contain_text("Connected.")
            expect(page.locator("#calendars")).to_contain_text("lessons (CalDAV)")
            expect(page.locator("#calendars")).to_contain_text("personal (CalDAV)")
            expect(page.get_by_label("App password")).to_have_value("")

            page.get_by_role("checkbox", name="personal: Blocks my time").uncheck()
            expect(page.locator("#status")).to_have_text("personal no longer blocks your time.")
            page.get_by_role("radio", name="lessons: Receives sessions").check()
            expect(page.locator("#status")).to_have_text("Sessions will be written to lessons.")
            expect(page.get_by_role("radio", name="lessons: Receives sessions")).to_be_checked()
            page.screenshot(path=str(ARTIFACTS / "mentor-connected.png"), full_page=True)
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(ARTIFACTS / "mentor-page.png"))
            assert DAV_PASSWORD not in page.content()
        finally:
            browser.close()

    with database.session() as session:
        chosen = {c.name: (c.blocks_time, c.is_destination) for c in session.query(Calendar)}
        [account] = session.query(CalendarAccount).all()
    assert chosen == {
        "Work": (True, False),
        "lessons": (True, True),
        "personal": (False, False),
    }
    assert account.secret is not None and DAV_PASSWORD not in account.secret
    README_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ARTIFACTS / "mentor-page.png", README_SCREENSHOT)
