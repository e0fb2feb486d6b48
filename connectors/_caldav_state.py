"""Pull state of the CalDAV connector: the ``sync:`` token and ``ctag:`` JSON encodings."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from connectors.base import StaleSyncState

_SYNC_PREFIX = "sync:"
_CTAG_PREFIX = "ctag:"


def _encode_ctag_state(ctag: str | None, previous: Mapping[str, Any]) -> str:
    payload = {"ctag": ctag, "etags": dict(previous.get("etags", {}))}
    return _CTAG_PREFIX + json.dumps(payload, separators=(",", ":"), sort_keys=True)


def _decode_ctag_state(state: str) -> Mapping[str, Any]:
    try:
        payload = json.loads(state[len(_CTAG_PREFIX) :])
    except json.JSONDecodeError as exc:
        raise StaleSyncState("unreadable ctag state") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("etags"), dict):
        raise StaleSyncState("unreadable ctag state")
    return payload
