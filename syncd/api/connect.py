"""Connecting a mentor's CalDAV account from the page, through the shared calendar service.

`syncd.calendars.connect_caldav` tests the account live and stores it with the password
encrypted; this module only adds what a page request needs first: an encryption key must
exist (no point reaching the server otherwise) and the URL must pass the SSRF guard.
"""

from __future__ import annotations

from syncd import calendars
from syncd.api import ssrf
from syncd.api.schemas_mentor import CalDAVConnectIn
from syncd.api.settings import ApiSettings
from syncd.secrets import Secret, secret_box
from syncd.store.db import Database


def connect_caldav_account(
    db: Database, settings: ApiSettings, mentor_id: str, body: CalDAVConnectIn
) -> calendars.Connected:
    """Check, test live, store. The one call into syncd.calendars, kept small to adapt."""
    secret_box(settings.config)  # raises a clear ConfigError when no key is configured
    url = body.url.strip()
    ssrf.check_url(url, allow_private=settings.allow_private_caldav)
    password = Secret(body.password.get_secret_value()) if body.password else None
    return calendars.connect_caldav(
        db, settings.config, mentor_id, url, body.username or None, password
    )
