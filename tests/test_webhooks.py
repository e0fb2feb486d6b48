"""Webhooks: payloads, signatures, and delivery to a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from syncd.store.models import Booking
from syncd.webhooks import (
    SIGNATURE_HEADER,
    PermanentDeliveryError,
    SignatureError,
    TransientDeliveryError,
    WebhookError,
    deliver,
    encode_body,
    sign,
    verify,
    webhook_payload,
)
from tests.servers import refused_url

SECRET = "whsec-test-0123456789"


@dataclass
class Receiver:
    """Verifies each delivery's signature with the shared secret, then answers `status`."""

    url: str
    status: int = 204
    delay_s: float = 0.0
    received: list[dict[str, object]] = field(default_factory=list)
    rejected: int = 0


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(receiver.delay_s)
            try:
                verify(SECRET, body, self.headers[SIGNATURE_HEADER], now=int(time.time()))
            except SignatureError:
                receiver.rejected += 1
                self.send_response(401)
            else:
                receiver.received.append(
                    {"event": self.headers["Syncd-Event"], "body": json.loads(body)}
                )
                self.send_response(receiver.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
            return None

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def make_booking(**changes: object) -> Booking:
    start = datetime(2027, 3, 2, 8, tzinfo=UTC)
    values: dict[str, object] = {
        "id": "a" * 32,
        "service_slug": "mentoring",
        "mentor_id": "ana",
        "student_id": "sam",
        "start": start,
        "end": start.replace(hour=9),
        "status": "confirmed",
        "sequence": 0,
        "created_at": datetime(2027, 3, 1, 6, tzinfo=UTC),
    }
    return Booking(**(values | changes))


def test_payload_carries_the_booking_and_a_stable_id() -> None:
    payload = webhook_payload("booking.rescheduled", make_booking(sequence=2))
    assert payload["id"] == f"{'a' * 32}.2.booking.rescheduled"
    assert payload["type"] == "booking.rescheduled"
    assert payload["booking"]["start"] == "2027-03-02T08:00:00Z"
    assert payload["booking"]["student"] == "sam"


def test_unknown_event_is_refused() -> None:
    with pytest.raises(WebhookError, match="unknown webhook event"):
        webhook_payload("booking.exploded", make_booking())


def test_signature_round_trip_and_tampering() -> None:
    body = b'{"a":1}'
    header = sign(SECRET, body, 1_800_000_000)
    assert header.startswith("t=1800000000,v1=")
    verify(SECRET, body, header, now=1_800_000_010)
    with pytest.raises(SignatureError, match="does not match"):
        verify(SECRET, b'{"a":2}', header, now=1_800_000_010)
    with pytest.raises(SignatureError, match="does not match"):
        verify("other-secret", body, header, now=1_800_000_010)
    with pytest.raises(SignatureError, match="tolerance"):
        verify(SECRET, body, header, now=1_800_001_000)
    with pytest.raises(SignatureError, match="malformed"):
        verify(SECRET, body, None, now=1_800_000_000)


def test_delivery_is_signed_and_received(receiver: Receiver) -> None:
    payload = webhook_payload("booking.created", make_booking())
    deliver(receiver.url, "booking.created", payload, SECRET, timeout=5)
    assert receiver.received == [{"event": "booking.created", "body": payload}]
    assert receiver.rejected == 0


def test_wrong_secret_is_rejected_by_the_receiver_permanently(receiver: Receiver) -> None:
    payload = webhook_payload("booking.cancelled", make_booking(status="cancelled"))
    with pytest.raises(PermanentDeliveryError, match="HTTP 401"):
        deliver(receiver.url, "booking.cancelled", payload, "not-the-secret", timeout=5)
    assert receiver.rejected == 1


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (503, TransientDeliveryError),
        (429, TransientDeliveryError),
        (410, PermanentDeliveryError),
        (302, PermanentDeliveryError),
    ],
)
def test_status_decides_retry(receiver: Receiver, status: int, error: type[WebhookError]) -> None:
    receiver.status = status
    with pytest.raises(error):
        deliver(
            receiver.url,
            "booking.created",
            webhook_payload("booking.created", make_booking()),
            SECRET,
            5,
        )


def test_timeout_is_transient(receiver: Receiver) -> None:
    receiver.delay_s = 1.0
    with pytest.raises(TransientDeliveryError):
        deliver(
            receiver.url,
            "booking.created",
            webhook_payload("booking.created", make_booking()),
            SECRET,
            0.2,
        )


def test_refused_connection_is_transient_and_hides_credentials() -> None:
    url = refused_url().replace("http://", "http://user:pa55word@")
    with pytest.raises(TransientDeliveryError) as caught:
        deliver(
            url, "booking.created", webhook_payload("booking.created", make_booking()), SECRET, 2
        )
    assert "pa55word" not in str(caught.value)


def test_body_encoding_is_canonical() -> None:
    assert encode_body({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()
