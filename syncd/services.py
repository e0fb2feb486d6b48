"""Services built from the configuration, shared by the CLI, the HTTP API and the daemon."""

from __future__ import annotations

from syncd.booking import BookingService, Observer
from syncd.config import Config
from syncd.errors import ConfigError
from syncd.store.db import Database
from syncd.sync import DEFAULT_LIVE_CHECK_TIMEOUT, live_check_for


def booking_service(
    db: Database, config: Config, *, observer: Observer | None = None
) -> BookingService:
    """A BookingService with the live calendar check (`[sync] live_check`, default on; policy
    `[sync] live_check_policy`: "refuse" (default) or "allow" when a calendar can't be asked)
    and webhooks when `[webhooks] url` is set."""
    policy = str(config.get("sync", "live_check_policy", "refuse"))
    if policy not in ("refuse", "allow"):
        raise ConfigError(
            f"{config.path or 'config'}: [sync] live_check_policy must be refuse or allow"
        )
    live_check = None
    if config.get("sync", "live_check", True):
        timeout = config.positive("sync", "live_check_timeout_seconds", DEFAULT_LIVE_CHECK_TIMEOUT)
        live_check = live_check_for(db, config, timeout=timeout)
    return BookingService(
        db,
        live_check=live_check,
        live_check_policy=policy,
        webhooks=bool(config.get("webhooks", "url")),
        observer=observer,
    )
