"""Webhooks out: booking events POSTed as signed JSON to the academy's app, retried by the outbox.

The signature header is `Syncd-Signature: t=<unix time>,v1=<hex HMAC-SHA256>` over
`"<t>." + body` with the webhook's shared secret, so a receiver can check both who sent the
body and that it is fresh (replays of old deliveries fail the time check).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from syncd import __version__
from syncd.errors import SyncdError
from syncd.store.models import Booking

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Syncd-Signature"
EVENT_HEADER = "Syncd-Event"
DELIVERY_HEADER = "Syncd-Delivery"
EVENTS = ("booking.created", "booking.rescheduled", "booking.cancelled")
DEFAULT_TOLERANCE_S = 300
# Statuses after which the same request may well succeed later.
_RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class WebhookError(SyncdError):
    """A delivery failed; `transient` says whether the outbox should retry it."""

    transient = False


class TransientDeliveryError(WebhookError):
    transient = True


class PermanentDeliveryError(WebhookError):
    transient = False


class SignatureError(WebhookError):
    """A received signature is missing, malformed, wrong or too old."""


def _utc_text(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def booking_document(booking: Booking) -> dict[str, Any]:
    """The booking as the API and webhooks show it (same fields as `syncd book --json`)."""
    return {
        "id": booking.id,
        "service": booking.service_slug,
        "mentor": booking.mentor_id,
        "student": booking.student_id,
        "start": _utc_text(booking.start),
        "end": _utc_text(booking.end),
        "status": booking.status,
        "sequence": booking.sequence,
        "created_at": _utc_text(booking.created_at),
        "cancelled_at": _utc_text(booking.cancelled_at),
        "cancelled_by": booking.cancelled_by,
        "cancel_reason": booking.cancel_reason,
    }


def webhook_payload(event: str, booking: Booking) -> dict[str, Any]:
    """The event body. Its `id` is stable per booking version, so receivers can drop repeats."""
    if event not in EVENTS:
        raise WebhookError(f"unknown webhook event {event!r}: one of {', '.join(EVENTS)}")
    return {
        "id": f"{booking.id}.{booking.sequence}.{event}",
        "type": event,
        "booking": booking_document(booking),
    }


def encode_body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def _mac(secret: str, body: bytes, timestamp: int) -> str:
    signed = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The `Syncd-Signature` header value for `body` sent at `timestamp` (unix seconds)."""
    return f"t={timestamp},v1={_mac(secret, body, timestamp)}"


def verify(
    secret: str, body: bytes, header: str | None, *, now: int, tolerance: int = DEFAULT_TOLERANCE_S
) -> None:
    """For receivers (and tests): SignatureError unless `header` signs `body` recently."""
    fields = dict(part.split("=", 1) for part in (header or "").split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        raise SignatureError("signature header is missing or malformed") from None
    if abs(now - timestamp) > tolerance:
        raise SignatureError("signature timestamp is outside the tolerance")
    if not hmac.compare_digest(fields.get("v1", ""), _mac(secret, body, timestamp)):
        raise SignatureError("signature does not match")


def deliver(
    url: str,
    event: str,
    payload: dict[str, Any],
    secret: str,
    timeout: float,
    *,
    client: httpx.Client | None = None,
) -> None:
    """POST one event. Raises TransientDeliveryError (retry later) or PermanentDeliveryError."""
    body = encode_body(payload)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"syncd/{__version__}",
        EVENT_HEADER: event,
        DELIVERY_HEADER: str(payload.get("id", "")),
        SIGNATURE_HEADER: sign(secret, body, int(time.time())),
    }
    host = httpx.URL(url).host  # logged instead of the URL, which may carry credentials
    try:
        if client is None:
            with httpx.Client(follow_redirects=False) as own_client:
                response = own_client.post(url, content=body, headers=headers, timeout=timeout)
        else:
            response = client.post(url, content=body, headers=headers, timeout=timeout)
    except httpx.TransportError as error:
        raise TransientDeliveryError(f"webhook to {host}: {type(error).__name__}") from None
    _check_status(host, event, response.status_code)


def _check_status(host: str, event: str, status: int) -> None:
    if 200 <= status < 300:
        log.info("webhook %s delivered to %s (%d)", event, host, status)
        return
    message = f"webhook {event} to {host}: HTTP {status}"
    if status in _RETRYABLE_STATUSES:
        raise TransientDeliveryError(message)
    raise PermanentDeliveryError(message)
