"""A real SMTP server (aiosmtpd) for tests: collects mail, optional AUTH and TLS, fault injection.

    with running_smtp_server() as server:
        send_message(SmtpSettings(host=server.host, port=server.port), message)
        [mail] = server.wait_for_messages(1)

`server.reject_next_rcpt(451)` makes the next RCPT TO fail once with that code.
`server.delay_next_data_reply(seconds)` stores the next message at once but answers its DATA
only after `seconds` (a client killed meanwhile never learns it was delivered).
TLS needs a certificate: `make_self_signed_cert(tmp_path)` writes a throwaway one for
127.0.0.1 / localhost whose certificate file doubles as the client's CA file.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import ssl
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HOST = "127.0.0.1"
_START_ATTEMPTS = 5
_DEFAULT_REPLY_TEXT = {451: "4.3.0 Try again later", 550: "5.1.1 No such user"}


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    message: EmailMessage


@dataclass(frozen=True)
class TlsFiles:
    cert_path: Path  # also the CA file a client should trust
    key_path: Path


class _CollectingHandler:
    """aiosmtpd handler hooks; runs on the server's event loop thread."""

    def __init__(self, *, require_auth: bool) -> None:
        self.require_auth = require_auth
        self.received: list[ReceivedMail] = []
        self.rcpt_rejections: deque[str] = deque()
        self.logins: list[str] = []
        self.arrived = threading.Condition()
        self.data_reply_delays: deque[tuple[float, threading.Event]] = deque()

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        # Enforced here rather than with aiosmtpd's auth_required, which warns on every
        # connection unless the session used STARTTLS (SMTPS and plain tests need AUTH too).
        if self.require_auth and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(  # hook names are fixed by aiosmtpd
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if self.rcpt_rejections:
            return self.rcpt_rejections.popleft()
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = bytes(envelope.original_content or envelope.content)
        parsed = message_from_bytes(raw, policy=default_policy)
        assert isinstance(parsed, EmailMessage)
        mail = ReceivedMail(envelope.mail_from, tuple(envelope.rcpt_tos), raw, parsed)
        with self.arrived:
            self.received.append(mail)
            self.arrived.notify_all()
        if self.data_reply_delays:
            delay, held = self.data_reply_delays.popleft()
            held.set()
            await asyncio.sleep(delay)  # cancelled if the client goes away meanwhile
        return "250 Message accepted for delivery"


class SmtpTestServer:
    """What a test sees of the running server."""

    def __init__(self, handler: _CollectingHandler, port: int) -> None:
        self._handler = handler
        self.host = HOST
        self.port = port

    @property
    def messages(self) -> list[ReceivedMail]:
        with self._handler.arrived:
            return list(self._handler.received)

    @property
    def logins(self) -> list[str]:
        """User names that authenticated successfully, in order."""
        return list(self._handler.logins)

    def reject_next_rcpt(self, code: int, text: str | None = None) -> None:
        """The next RCPT TO (of any session) gets `code` instead of 250; later ones succeed."""
        reply_text = text or _DEFAULT_REPLY_TEXT.get(code, "Rejected by test")
        self._handler.rcpt_rejections.append(f"{code} {reply_text}")

    def delay_next_data_reply(self, seconds: float) -> threading.Event:
        """The next message is stored as it arrives, but the reply to its DATA comes `seconds`
        later. The returned event is set once that message is stored and the reply held."""
        held = threading.Event()
        self._handler.data_reply_delays.append((seconds, held))
        return held

    def wait_for_messages(self, count: int, timeout: float = 5.0) -> list[ReceivedMail]:
        """Block until at least `count` messages arrived; AssertionError after `timeout` s."""
        with self._handler.arrived:
            arrived = self._handler.arrived.wait_for(
                lambda: len(self._handler.received) >= count, timeout=timeout
            )
            received = list(self._handler.received)
        assert arrived, f"expected {count} message(s) within {timeout}s, got {len(received)}"
        return received


@contextmanager
def running_smtp_server(
    *,
    auth: tuple[str, str] | None = None,
    starttls: TlsFiles | None = None,
    implicit_tls: TlsFiles | None = None,
) -> Iterator[SmtpTestServer]:
    """An SMTP server on 127.0.0.1 and a free port, stopped on exit.

    `auth=(user, password)` requires AUTH (over TLS when `starttls` is given); `starttls` offers
    and requires STARTTLS; `implicit_tls` speaks TLS from the first byte (SMTPS, security="ssl").
    """
    handler = _CollectingHandler(require_auth=auth is not None)
    options = _controller_options(handler, auth, starttls, implicit_tls)
    controller = _start_on_free_port(handler, options)
    try:
        yield SmtpTestServer(handler, controller.port)
    finally:
        controller.stop()


def _controller_options(
    handler: _CollectingHandler,
    auth: tuple[str, str] | None,
    starttls: TlsFiles | None,
    implicit_tls: TlsFiles | None,
) -> dict[str, Any]:
    # A fixed server name avoids a reverse DNS lookup (socket.getfqdn) on every start.
    options: dict[str, Any] = {"server_hostname": "localhost", "ready_timeout": 5.0}
    if starttls is not None:
        options.update(tls_context=_server_tls_context(starttls), require_starttls=True)
    if implicit_tls is not None:
        options["ssl_context"] = _server_tls_context(implicit_tls)
    if auth is not None:
        options.update(
            authenticator=_authenticator(handler, *auth),
            # aiosmtpd only counts STARTTLS as TLS; SMTPS and plain sessions may log in too.
            auth_require_tls=starttls is not None,
        )
    return options


def _authenticator(handler: _CollectingHandler, user: str, password: str) -> Any:
    def authenticate(
        server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        if ok:
            handler.logins.append(user)
        # handled=False: let aiosmtpd send the 235 / 535 reply itself.
        return AuthResult(success=ok, handled=False)

    return authenticate


def _start_on_free_port(handler: _CollectingHandler, options: dict[str, Any]) -> Controller:
    # aiosmtpd's readiness probe connects to the configured port, so port 0 cannot be used;
    # pick a free one and try again if another process grabs it first.
    for _attempt in range(_START_ATTEMPTS):
        controller = Controller(handler, hostname=HOST, port=free_port(), **options)
        try:
            controller.start()
        except OSError as error:
            controller.stop(no_assert=True)
            if error.errno != errno.EADDRINUSE:
                raise
            continue
        return controller
    raise RuntimeError(f"no free port for the SMTP server after {_START_ATTEMPTS} attempts")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _server_tls_context(files: TlsFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.cert_path, files.key_path)
    return context


def make_self_signed_cert(directory: Path) -> TlsFiles:
    """A throwaway certificate valid for 127.0.0.1 and localhost, written into `directory`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "syncd test SMTP")])
    now = datetime.now(UTC)
    alt_names = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(alt_names, critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    files = TlsFiles(directory / "smtp-cert.pem", directory / "smtp-key.pem")
    files.cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    files.key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


@contextmanager
def silent_tcp_server() -> Iterator[int]:
    """A port that accepts TCP connections but never says a word (a hung mail server)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind((HOST, 0))
        listener.listen(8)
        yield listener.getsockname()[1]
    finally:
        listener.close()
