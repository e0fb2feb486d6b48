"""End to end in Debian's Chromium: a student books and cancels from their page link."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from syncd.api import create_app
from syncd.store.db import Database
from tests.servers import free_port
from tests.test_api_helpers import link_token, seed, settings

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path("test-artifacts")
README_SCREENSHOT = Path("docs/screenshots/student-page.png")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
STEP_TIMEOUT_MS = 10_000

if os.environ.get("SYNCD_REQUIRE_BROWSER") and not CHROMIUM.exists():
    raise RuntimeError("SYNCD_REQUIRE_BROWSER is set but /usr/bin/chromium is missing")

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install -y chromium)"
)
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture
def server_url() -> Iterator[str]:
    """The app on a seeded SQLite database, served by uvicorn on 127.0.0.1 in a thread."""
    with tempfile.TemporaryDirectory(prefix="syncd-browser-") as directory:
        database = Database(f"sqlite:///{Path(directory) / 'browser.db'}")
        database.upgrade()
        seed(database)
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(database, settings()), host="127.0.0.1", port=port, log_level="warning"
            )
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started, "uvicorn did not start within 10 s"
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(timeout=10)
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
