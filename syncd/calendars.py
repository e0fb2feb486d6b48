"""Connecting mentors' calendars: the connector factory, connect/reconnect, status, settings.

`connector_for(account, config)` is the one place that turns a stored account (credentials
encrypted with syncd.secrets) into a live connector; the sync engine, the outbox and the live
check all get their connectors from it (or from a test's replacement with the same signature).

Connecting tests the credentials live (list_calendars) before anything is saved, so a typo never
leaves a half-connected account behind. Connecting again with the same account (same mentor,
provider, URL and user) updates its secret and clears `needs_reconnect`: that is how a mentor
reconnects after a revoked grant or a changed password.

Options read here: `[caldav] timeout` (s, default 15) and `verify_tls` (default true);
`[google] api_endpoint`, `token_uri`, `send_updates` (default "none"), `timeout` (default 30).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from google.oauth2.credentials import Credentials

from connectors.base import AuthError, CalendarInfo, Connector, ConnectorError, TransientError
from connectors.caldav import CalDAVConnector
from connectors.google import GoogleConnector
from connectors.google_auth import (
    credentials_from_authorized_user_info,
    credentials_to_json,
    load_token_file,
    run_installed_app_flow,
)
from syncd.config import Config
from syncd.directory import require_mentor
from syncd.errors import NotFoundError, UserError
from syncd.secrets import Secret, SecretBox, secret_box
from syncd.store import calendars as store
from syncd.store.db import Database
from syncd.store.models import Calendar, CalendarAccount

log = logging.getLogger(__name__)

ConnectorFactory = Callable[[CalendarAccount], Connector]
PROVIDERS = ("caldav", "google")
DEFAULT_SYNC_INTERVAL_S = 300  # [sync] interval_seconds


# -- the connector factory --------------------------------------------------------------------


def connector_for(
    account: CalendarAccount,
    config: Config,
    *,
    box: SecretBox | None = None,
    mentor_emails: Sequence[str] = (),
    default_timezone: str = "UTC",
) -> Connector:
    """A live connector for a stored account, its secret decrypted only in memory."""
    if account.provider == "caldav":
        password = _decrypt(account, config, box)
        return CalDAVConnector(
            str(account.url),
            account.username,
            password.reveal() if password else None,
            timeout=config.positive("caldav", "timeout_seconds", 15.0),
            ssl_verify=bool(config.require_type("caldav", "verify_tls", bool, True)),
            default_timezone=default_timezone,
            mentor_emails=mentor_emails,
        )
    if account.provider == "google":
        token = _decrypt(account, config, box)
        if token is None:
            raise AuthError(f"Google account {account.id} has no stored token; reconnect it")
        return google_connector(_cached_credentials(account.id, token.reveal(), config), config)
    raise UserError(f"calendar account {account.id} has unknown provider {account.provider!r}")


# Access tokens live an hour; keeping each account's Credentials between pulls saves a token
# request per calendar per round. Keyed by a digest of the stored grant, so a reconnect (a new
# refresh token) starts afresh.
_credentials_cache: dict[tuple[int, str], Credentials] = {}
_credentials_lock = threading.Lock()


def _cached_credentials(account_id: int, token_json: str, config: Config) -> Credentials:
    token_uri = config.require_type("google", "token_uri", str, None)
    digest = hashlib.sha256(f"{token_uri}\n{token_json}".encode()).hexdigest()
    key = (account_id, digest)
    with _credentials_lock:
        cached = _credentials_cache.get(key)
        if cached is None:
            cached = credentials_from_authorized_user_info(json.loads(token_json), token_uri)
            for stale in [k for k in _credentials_cache if k[0] == account_id]:
                del _credentials_cache[stale]
            _credentials_cache[key] = cached
        return cached


def google_connector(credentials: Credentials | dict[str, Any], config: Config) -> GoogleConnector:
    return GoogleConnector(
        credentials,
        api_endpoint=config.require_type("google", "api_endpoint", str, None),
        token_uri=config.require_type("google", "token_uri", str, None),
        send_updates=str(config.require_type("google", "send_updates", str, "none")),
        timeout=config.positive("google", "timeout_seconds", 30.0),
    )


def default_factory(config: Config) -> ConnectorFactory:
    """`connector_for` bound to a config, with the secret key loaded once."""
    box = secret_box(config)
    return lambda account: connector_for(account, config, box=box)


def default_sync_interval(config: Config) -> int:
    """`[sync] interval_seconds`: how often a newly connected calendar is pulled."""
    return int(config.positive("sync", "interval_seconds", DEFAULT_SYNC_INTERVAL_S))


def _decrypt(account: CalendarAccount, config: Config, box: SecretBox | None) -> Secret | None:
    if account.secret is None:
        return None
    return (box or secret_box(config)).decrypt(account.secret)


# -- connecting -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Connected:
    account_id: int
    calendars: list[Calendar]
    found: list[CalendarInfo]  # everything the account offers, chosen or not


@dataclass(frozen=True)
class Selection:
    """Which of an account's calendars to add and which receives bookings.

    `calendars`: URLs, ids or display names; empty means the provider's default (every CalDAV
    calendar; Google's primary). `destination`: None for none, "" for "the one chosen" (only
    valid when exactly one is chosen), else a URL / id / name among the chosen.
    """

    calendars: Sequence[str] = ()
    destination: str | None = None


def connect_caldav(
    db: Database,
    config: Config,
    mentor_id: str,
    url: str,
    username: str | None,
    password: Secret | None,
    selection: Selection = Selection(),
    *,
    connector: Connector | None = None,
) -> Connected:
    """Check the account live, then store it (password encrypted) and the chosen calendars."""
    _check_url(url)
    box = secret_box(config)  # before any network call: no key, no connection attempt
    with db.session() as session:
        require_mentor(session, mentor_id)
    live = connector or CalDAVConnector(
        url,
        username,
        password.reveal() if password else None,
        timeout=config.positive("caldav", "timeout_seconds", 15.0),
        ssl_verify=bool(config.require_type("caldav", "verify_tls", bool, True)),
    )
    try:
        found = _list_live(live, url)
    finally:
        if connector is None:
            live.close()
    chosen = _choose(found, selection.calendars, default_all=True)
    secret = box.encrypt(password) if password else None
    return _store(
        db, mentor_id, "caldav", url, username, secret, chosen, found, selection,
        interval_s=default_sync_interval(config),
    )  # fmt: skip


def connect_google(
    db: Database,
    config: Config,
    mentor_id: str,
    credentials: Credentials,
    selection: Selection = Selection(),
    *,
    connector: Connector | None = None,
) -> Connected:
    """Check the grant live (calendarList), then store it encrypted with the chosen calendars."""
    box = secret_box(config)
    with db.session() as session:
        require_mentor(session, mentor_id)
    live = connector or google_connector(credentials, config)
    try:
        found = _list_live(live, "Google")
    finally:
        if connector is None:
            live.close()
    chosen = _choose(found, selection.calendars, default_all=False)
    secret = box.encrypt(credentials_to_json(credentials))
    # The account is the grant; its user is the primary calendar's id (the Google address).
    user = next((info.remote_id for info in found if info.primary), None)
    return _store(
        db, mentor_id, "google", None, user, secret, chosen, found, selection,
        interval_s=default_sync_interval(config),
    )  # fmt: skip


def connect_google_token_file(
    db: Database,
    config: Config,
    mentor_id: str,
    path: str | Path,
    selection: Selection = Selection(),
) -> Connected:
    """Connect with an existing authorized-user JSON file (automation; no browser)."""
    token_uri = config.require_type("google", "token_uri", str, None)
    return connect_google(db, config, mentor_id, load_token_file(path, token_uri), selection)


def connect_google_flow(
    db: Database,
    config: Config,
    mentor_id: str,
    client_secrets: str | Path,
    selection: Selection = Selection(),
) -> Connected:
    """Run the installed-app flow (prints the consent URL), then connect the grant."""
    credentials = run_installed_app_flow(client_secrets)
    token_uri = config.require_type("google", "token_uri", str, None)
    if token_uri:
        credentials = credentials.with_token_uri(token_uri)
    return connect_google(db, config, mentor_id, credentials, selection)


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UserError(f"not an http(s) URL: {url!r}")
    if parts.password:
        raise UserError("put the password in --password-file or --password-env, not in the URL")


def _list_live(connector: Connector, where: str) -> list[CalendarInfo]:
    try:
        return connector.list_calendars()
    except AuthError as error:
        raise UserError(f"{where} rejected the credentials: {error}") from None
    except TransientError as error:
        raise UserError(f"cannot reach {where}: {error}") from None
    except ConnectorError as error:
        raise UserError(f"{where} answered something unusable: {error}") from None


def _choose(
    found: list[CalendarInfo], wanted: Sequence[str], *, default_all: bool
) -> list[CalendarInfo]:
    if not found:
        raise UserError("the account has no calendars")
    if wanted:
        return [_match(found, name) for name in wanted]
    if default_all:
        return list(found)
    primary = [info for info in found if info.primary]
    return primary or found[:1]


def _match(found: Sequence[CalendarInfo], wanted: str) -> CalendarInfo:
    for info in found:
        if _same_calendar(info, wanted):
            return info
    names = ", ".join(f"{info.name} <{info.remote_id}>" for info in found)
    raise UserError(f"no calendar {wanted!r} in the account; it has: {names}")


def _same_calendar(info: CalendarInfo, wanted: str) -> bool:
    if wanted in (info.remote_id, info.name):
        return True
    # A URL given with another host spelling or without the trailing slash still matches.
    path = urlsplit(wanted).path.rstrip("/")
    return bool(path) and urlsplit(info.remote_id).path.rstrip("/") == path


def _destination(chosen: Sequence[CalendarInfo], destination: str | None) -> str | None:
    if destination is None:
        return None
    if destination == "":
        if len(chosen) != 1:
            raise UserError("--destination needs a calendar when several are added: name one")
        return chosen[0].remote_id
    return _match(chosen, destination).remote_id


def _store(
    db: Database,
    mentor_id: str,
    provider: str,
    url: str | None,
    username: str | None,
    secret: str | None,
    chosen: list[CalendarInfo],
    found: list[CalendarInfo],
    selection: Selection,
    *,
    interval_s: int = DEFAULT_SYNC_INTERVAL_S,
) -> Connected:
    destination = _destination(chosen, selection.destination)
    if destination is not None and _info(chosen, destination).read_only:
        raise UserError(f"calendar {destination} is read-only and cannot receive bookings")
    with db.write_session() as session:
        account = store.find_account(session, mentor_id, provider, url, username)
        if account is None:
            account = CalendarAccount(mentor_id=mentor_id, provider=provider, url=url)
            account.username = username
            session.add(account)
        account.secret, account.needs_reconnect = secret, False
        session.flush()
        calendars = [_upsert_calendar(session, account, info, interval_s) for info in chosen]
        if destination is not None:
            target = next(c for c in calendars if c.remote_id == destination)
            target.is_destination = True
            session.flush()
            store.clear_other_destinations(session, mentor_id, target.id)
        # Write-backs that gave up on rejected credentials get another chance now.
        requeued = store.requeue_failed_writes(session, mentor_id, datetime.now(UTC))
        account_id = account.id
    if requeued:
        log.info("mentor %s: %d failed calendar write(s) queued again", mentor_id, requeued)
    log.info(
        "connected %s account %s of mentor %s: %d calendar(s)",
        provider,
        account_id,
        mentor_id,
        len(calendars),
    )
    return Connected(account_id, calendars, found)


def _info(found: Sequence[CalendarInfo], remote_id: str) -> CalendarInfo:
    return next(info for info in found if info.remote_id == remote_id)


def _upsert_calendar(
    session: Any, account: CalendarAccount, info: CalendarInfo, interval_s: int
) -> Calendar:
    calendar = store.calendar_by_remote(session, account.id, info.remote_id)
    if calendar is None:
        calendar = Calendar(
            mentor_id=account.mentor_id,
            account_id=account.id,
            provider=account.provider,
            remote_id=info.remote_id,
            blocks_time=True,
            is_destination=False,
            sync_interval_s=interval_s,
        )
        session.add(calendar)
    calendar.name, calendar.timezone = info.name[:200], info.timezone
    # Reconnected: pull at once, and forget the failures of the old credentials.
    calendar.needs_reconnect, calendar.next_sync_at = False, None
    calendar.consecutive_failures, calendar.last_error = 0, None
    session.flush()
    return calendar


# -- status and settings ----------------------------------------------------------------------


@dataclass(frozen=True)
class CalendarStatus:
    id: int
    mentor_id: str
    provider: str
    name: str
    remote_id: str
    timezone: str | None
    blocks_time: bool
    is_destination: bool
    last_success: datetime | None
    last_error: str | None
    consecutive_failures: int
    needs_reconnect: bool
    next_sync_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        def instant(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "id": self.id,
            "mentor_id": self.mentor_id,
            "provider": self.provider,
            "name": self.name,
            "remote_id": self.remote_id,
            "timezone": self.timezone,
            "blocks_time": self.blocks_time,
            "is_destination": self.is_destination,
            "last_success": instant(self.last_success),
            "last_error": self.last_error,
            "consecutive_failures": self.consecutive_failures,
            "needs_reconnect": self.needs_reconnect,
            "next_sync_at": instant(self.next_sync_at),
        }


def calendar_statuses(db: Database, mentor_id: str | None = None) -> list[CalendarStatus]:
    with db.session() as session:
        if mentor_id is not None:
            require_mentor(session, mentor_id)
        return [_status(session, calendar) for calendar in store.list_calendars(session, mentor_id)]


def _status(session: Any, calendar: Calendar) -> CalendarStatus:
    account = store.get_account(session, calendar.account_id) if calendar.account_id else None
    return CalendarStatus(
        id=calendar.id,
        mentor_id=calendar.mentor_id,
        provider=calendar.provider,
        name=calendar.name,
        remote_id=calendar.remote_id,
        timezone=calendar.timezone,
        blocks_time=calendar.blocks_time,
        is_destination=calendar.is_destination,
        last_success=calendar.last_success,
        last_error=calendar.last_error,
        consecutive_failures=calendar.consecutive_failures,
        needs_reconnect=calendar.needs_reconnect or bool(account and account.needs_reconnect),
        next_sync_at=calendar.next_sync_at,
    )


def configure_calendar(
    db: Database, calendar_id: int, *, blocks: bool | None = None, destination: bool = False
) -> CalendarStatus:
    """Turn blocking on or off, and/or make the calendar the mentor's destination."""
    with db.write_session() as session:
        calendar = _require_calendar(session, calendar_id)
        if blocks is not None:
            calendar.blocks_time = blocks
        if destination:
            calendar.is_destination = True
            session.flush()
            store.clear_other_destinations(session, calendar.mentor_id, calendar.id)
        session.flush()
        return _status(session, calendar)


def remove_calendar(db: Database, calendar_id: int, *, config: Config | None = None) -> None:
    """Forget a calendar, its objects and busy rows; the account goes with its last calendar.
    With `config`, its Google push channels are stopped first (the grant is still there)."""
    if config is not None:
        from syncd.push import stop_channels_for  # syncd.push imports this module

        stop_channels_for(db, config, calendar_id)
    with db.write_session() as session:
        calendar = _require_calendar(session, calendar_id)
        account_id = calendar.account_id
        store.wipe_calendar(session, calendar_id)
        session.delete(calendar)
        session.flush()
        if account_id is not None and not store.calendars_of_account(session, account_id):
            account = store.get_account(session, account_id)
            if account is not None:
                session.delete(account)


def _require_calendar(session: Any, calendar_id: int) -> Calendar:
    calendar = store.get_calendar(session, calendar_id)
    if calendar is None:
        raise NotFoundError(f"unknown calendar {calendar_id}")
    return calendar
