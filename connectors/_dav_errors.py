"""HTTP statuses and python-caldav errors mapped to the connector error family."""

from __future__ import annotations

from typing import Any

from caldav.lib import error as caldav_error

from connectors._dav_xml import DAV, _tag
from connectors.base import (
    AuthError,
    ConnectorError,
    NotFound,
    PreconditionFailed,
    ProtocolError,
    StaleSyncState,
    TransientError,
)


def _raise_for_status(method: str, url: str, response: Any, *, sync: bool) -> None:
    status = int(response.status)
    if status < 300:
        return
    if sync and status in (403, 409, 412) and _mentions_sync_token(response):
        raise StaleSyncState(f"{url}: server rejected the sync token ({status})")
    raise _status_error(method, url, status)


def _status_error(method: str, url: str, status: int) -> ConnectorError:
    message = f"{method} {url}: HTTP {status}"
    if status in (401, 403):
        return AuthError(message)
    if status in (404, 410):
        return NotFound(message)
    if status == 412:
        return PreconditionFailed(message)
    if status in (408, 429) or status >= 500:
        return TransientError(message)
    return ProtocolError(message)


def _authorization_error(
    method: str, url: str, exc: caldav_error.AuthorizationError, *, sync: bool
) -> ConnectorError:
    if sync and _tag(DAV, "valid-sync-token") in exc.preconditions:
        return StaleSyncState(f"{url}: server rejected the sync token")
    # Never include the request headers or credentials: only the status and URL.
    return AuthError(f"{method} {url}: access denied (HTTP {exc.status})")


def _mentions_sync_token(response: Any) -> bool:
    raw = response.raw if response.tree is not None else response._raw
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return "valid-sync-token" in text
