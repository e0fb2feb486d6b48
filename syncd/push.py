"""Google push notifications: `events.watch` channels, their renewal, and incoming notifications.

Optional: active only when `[http] public_url` is set and HTTPS (Google calls nothing else;
`[google] allow_insecure_push = true` allows plain HTTP for tests), since Google must reach
`<public_url>/google/push`. Polling stays on as the safety net: a lost notification only
delays a change until the calendar's next regular pull.

- `renew_watch_channels` (daemon job): every Google calendar that blocks time gets a channel;
  one that would expire within `RENEW_MARGIN` is replaced (open the new one, store it, then
  stop the old one: no gap without notifications). Channels of calendars that stopped
  blocking or lost their grant are stopped; expired ones are forgotten. Failures are logged
  and retried at the next run.
- `receive_notification` (the webhook): the channel must be known and its token match
  (compared in constant time); `sync` messages are ignored; any other state makes the calendar
  due now, and the caller wakes the sync job, which pulls it incrementally (syncToken).
- `stop_channels_for` closes a calendar's channels when it is removed.

Replicas running the job at the same moment may both open a channel for a calendar; that only
doubles notifications until the next renewal, since only channels about to expire are stopped.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable
from urllib.parse import urlsplit

from connectors.base import AuthError, ConnectorError
from connectors.google import WatchChannel
from syncd.calendars import ConnectorFactory, default_factory
from syncd.config import Config
from syncd.errors import SyncdError
from syncd.store import calendars as calendar_store
from syncd.store import watch as store
from syncd.store.db import Database
from syncd.store.models import CalendarAccount, PushChannel

if TYPE_CHECKING:
    from syncd.daemon import JobContext

log = logging.getLogger(__name__)

PUSH_PATH = "/google/push"
CHANNEL_TTL = timedelta(days=7)  # what Google grants events.watch channels by default
RENEW_MARGIN = timedelta(days=1)  # renew this long before expiry: many job runs to succeed
RENEW_INTERVAL = timedelta(hours=1)
SYNC_JOB = "sync_calendars"
_T = TypeVar("_T")


@runtime_checkable
class Watcher(Protocol):
    """What a connector offers for push channels (GoogleConnector)."""

    def watch(
        self, calendar_id: str, address: str, token: str, ttl_seconds: int
    ) -> WatchChannel: ...

    def stop_channel(self, channel_id: str, resource_id: str) -> None: ...

    def close(self) -> None: ...


# -- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PushSettings:
    address: str  # where Google POSTs notifications
    ttl: timedelta = CHANNEL_TTL
    margin: timedelta = RENEW_MARGIN


def push_settings(config: Config) -> PushSettings | None:
    """The settings when push is on: `[http] public_url` set and HTTPS (or HTTP when
    `[google] allow_insecure_push`), else None."""
    public_url = config.require_type("http", "public_url", str, None)
    if not public_url:
        return None
    insecure_ok = bool(config.require_type("google", "allow_insecure_push", bool, False))
    scheme = urlsplit(public_url).scheme
    if scheme != "https" and not (scheme == "http" and insecure_ok):
        log.debug("Google push notifications are off: [http] public_url is not https")
        return None
    return PushSettings(address=public_url.rstrip("/") + PUSH_PATH)


# -- the renewal job --------------------------------------------------------------------------


def renew_watch_channels(ctx: JobContext) -> int:
    """Daemon job: open missing channels, replace expiring ones, stop unwanted ones.
    Returns how many channels were opened."""
    settings = push_settings(ctx.config)
    if settings is None:
        return 0  # turned off by a config reload
    factory = default_factory(ctx.config)
    now = ctx.now()
    with ctx.db.session() as session:
        targets = store.calendars_needing_channel(session, now + settings.margin)
    opened = 0
    for target in targets:
        if ctx.stop.is_set():
            break
        opened += _open_channel(ctx.db, factory, settings, target, now)
    retire_channels(ctx.db, factory, now, settings.margin, ctx.stop)
    return opened


def _open_channel(
    db: Database,
    factory: ConnectorFactory,
    settings: PushSettings,
    target: store.WatchTarget,
    now: datetime,
) -> bool:
    account = _account(db, target.account_id)
    if account is None:
        return False
    token = secrets.token_urlsafe(32)
    try:
        channel = _with_watcher(
            factory,
            account,
            lambda w: w.watch(
                target.remote_id, settings.address, token, int(settings.ttl.total_seconds())
            ),
        )
    except (ConnectorError, SyncdError) as error:
        log.warning(
            "calendar %s: could not open a push channel (retrying next run): %s",
            target.calendar_id,
            error,
        )
        return False
    if not _store_channel(db, target.calendar_id, channel, token):
        log.info("calendar %s was removed meanwhile; closing its new channel", target.calendar_id)
        _stop(factory, account, channel.channel_id, channel.resource_id)
        return False
    log.info(
        "calendar %s: push channel %s open until %s",
        target.calendar_id,
        channel.channel_id,
        channel.expiration.isoformat(),
    )
    return True


def _store_channel(db: Database, calendar_id: int, channel: WatchChannel, token: str) -> bool:
    with db.write_session() as session:
        if calendar_store.get_calendar(session, calendar_id) is None:
            return False
        store.add_channel(
            session,
            calendar_id,
            channel_id=channel.channel_id,
            resource_id=channel.resource_id,
            token=token,
            expiration=channel.expiration,
        )
    return True


def retire_channels(
    db: Database,
    factory: ConnectorFactory,
    now: datetime,
    margin: timedelta,
    stop: threading.Event | None = None,
) -> int:
    """Forget expired channels; stop those replaced by a newer one or of calendars no longer
    watched. Returns how many were stopped."""
    with db.session() as session:
        channels = list(store.all_channels(session))
        watched = store.watchable_calendar_ids(session)
    lasting = {c.calendar_id for c in channels if c.expiration > now + margin}
    stopped = 0
    for channel in channels:
        if stop is not None and stop.is_set():
            break
        if channel.expiration <= now:
            _forget(db, channel.channel_id)  # Google already closed it
        elif channel.calendar_id not in watched or (
            channel.expiration <= now + margin and channel.calendar_id in lasting
        ):
            stopped += _stop_and_forget(db, factory, channel)
    return stopped


def _stop_and_forget(db: Database, factory: ConnectorFactory, channel: PushChannel) -> bool:
    account = _account_of_calendar(db, channel.calendar_id)
    if account is not None and not _stop(factory, account, channel.channel_id, channel.resource_id):
        return False  # kept: stopped at the next run
    _forget(db, channel.channel_id)
    return True


def _stop(
    factory: ConnectorFactory, account: CalendarAccount, channel_id: str, resource_id: str
) -> bool:
    """Stop a channel. False when that should be tried again later; a rejected grant cannot
    stop it ever, so it counts as done (the channel expires on its own)."""
    try:
        _with_watcher(factory, account, lambda w: w.stop_channel(channel_id, resource_id))
    except AuthError as error:
        log.warning(
            "push channel %s cannot be stopped (%s); it expires by itself", channel_id, error
        )
    except (ConnectorError, SyncdError) as error:
        log.warning("could not stop push channel %s (retrying next run): %s", channel_id, error)
        return False
    return True


def _forget(db: Database, channel_id: str) -> None:
    with db.write_session() as session:
        store.delete_channel(session, channel_id)


# -- removal ----------------------------------------------------------------------------------


def stop_channels_for(
    db: Database, config: Config, calendar_id: int, *, factory: ConnectorFactory | None = None
) -> int:
    """Stop a calendar's channels (before it is removed). Best effort: a channel that cannot be
    stopped is logged and expires on its own; its notifications then meet 404. Returns how
    many were stopped."""
    with db.session() as session:
        channels = list(store.channels_of(session, calendar_id))
    if not channels:
        return 0
    account = _account_of_calendar(db, calendar_id)
    if account is None:
        return 0
    try:
        chosen = factory or default_factory(config)
    except SyncdError as error:
        log.warning("calendar %s: push channels not stopped: %s", calendar_id, error)
        return 0
    stopped = 0
    for channel in channels:
        if _stop(chosen, account, channel.channel_id, channel.resource_id):
            _forget(db, channel.channel_id)
            stopped += 1
    return stopped


# -- incoming notifications -------------------------------------------------------------------


class PushOutcome(StrEnum):
    ACCEPTED = "accepted"  # the calendar is due now: wake the sync job
    IGNORED = "ignored"  # a `sync` message or an unknown state
    UNKNOWN_CHANNEL = "unknown_channel"
    BAD_TOKEN = "bad_token"


def receive_notification(
    db: Database, *, channel_id: str, token: str | None, state: str | None, now: datetime
) -> PushOutcome:
    """Check a notification's channel and token; on a change, make the calendar due now."""
    with db.write_session() as session:
        channel = store.channel_by_id(session, channel_id)
        if channel is None:
            return PushOutcome.UNKNOWN_CHANNEL
        if not hmac.compare_digest(channel.token.encode(), (token or "").encode()):
            log.warning("push notification for channel %s with a wrong token; refused", channel_id)
            return PushOutcome.BAD_TOKEN
        if state not in ("exists", "not_exists"):
            return PushOutcome.IGNORED  # "sync" only announces the channel
        store.mark_calendar_due(session, channel.calendar_id, now)
        calendar_id = channel.calendar_id
    log.debug("push notification: calendar %s changed", calendar_id)
    return PushOutcome.ACCEPTED


# -- helpers ----------------------------------------------------------------------------------


def _account(db: Database, account_id: int) -> CalendarAccount | None:
    with db.session() as session:
        return calendar_store.get_account(session, account_id)


def _account_of_calendar(db: Database, calendar_id: int) -> CalendarAccount | None:
    with db.session() as session:
        calendar = calendar_store.get_calendar(session, calendar_id)
        if calendar is None or calendar.account_id is None:
            return None
        return calendar_store.get_account(session, calendar.account_id)


def _with_watcher(
    factory: ConnectorFactory, account: CalendarAccount, call: Callable[[Watcher], _T]
) -> _T:
    connector = factory(account)
    try:
        if not isinstance(connector, Watcher):
            raise SyncdError(f"calendar account {account.id} does not support push channels")
        return call(connector)
    finally:
        connector.close()
