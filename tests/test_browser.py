"""End to end in Debian's Chromium: a student books and cancels from their page link."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.api import create_app
from syncd.store.db import Database
from tests.browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    STEP_TIMEOUT_MS,
    needs_chromium,
    served,
)
from tests.test_api_helpers import link_token, seed, settings

README_SCREENSHOT = Path("docs/screenshots/student-page.png")

pytestmark = needs_chromium
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture
def server_url() -> Iterator[str]:
    """The app on a seeded SQLite database, served by uvicorn on 127.0.0.1 in a thread."""
    with tempfile.TemporaryDirectory(prefix="syncd-browser-") as directory:
        database = Database(f"sqlite:///{Path(directory) / 'browser.db'}")
        database.upgrade()
        seed(database)
        try:
            with served(create_app(database, settings())) as url:
                yield url
        finally:
            database.dispose()


def test_student_books_and_cancels(server_url: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                viewport={"width": 390, "height": 844},
                timezone_id="America/New_York",
                locale="en-GB",
            )
            page = context.new_page()
            page.set_default_timeout(STEP_TIMEOUT_MS)
            page.goto(f"{server_url}/s/{link_token('student', 'sam')}")
            expect = sync_api.expect
            expect(page.locator("#quota")).to_have_text("4 sessions left, renews on 2027-04-01.")
            expect(page.locator("#zone")).to_have_value("America/New_York")

            page.get_by_role("button", name="Book Tuesday 2 March 03:00").click()
            expect(page.locator("#status")).to_contain_text(
                "Booked: Tuesday, 2 March 2027 at 03:00."
            )
            expect(page.locator("#quota")).to_have_text("3 sessions left, renews on 2027-04-01.")
            ics = page.locator("#status a").get_attribute("href")
            assert ics is not None
            calendar = page.request.get(server_url + ics)
            assert "BEGIN:VEVENT" in calendar.text()
            page.evaluate("window.scrollTo(0, 0)")  # the README shows the top of the page
            page.screenshot(path=str(ARTIFACTS / "student-booked.png"))

            page.locator("#bookings").get_by_role("button", name="Cancel").click()
            expect(page.locator("#bookings")).to_contain_text("This session will be given back.")
            page.screenshot(path=str(ARTIFACTS / "student-cancel-confirm.png"), full_page=True)
            page.get_by_role("button", name="Confirm cancel").click()
            expect(page.locator("#status")).to_have_text("Cancelled; the session was given back.")
            expect(page.locator("#bookings")).to_have_text("None yet.")
            expect(page.locator("#quota")).to_have_text("4 sessions left, renews on 2027-04-01.")
        finally:
            browser.close()
    README_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ARTIFACTS / "student-booked.png", README_SCREENSHOT)
