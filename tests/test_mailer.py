"""syncd.mailer against a real SMTP server (aiosmtpd on 127.0.0.1)."""

from __future__ import annotations

import base64
import logging
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest

from syncd.invites import InviteDetails, build_calendar, build_message
from syncd.mailer import (
    PermanentMailError,
    SmtpSettings,
    TransientMailError,
    send_message,
)
from tests.smtp_server import (
    TlsFiles,
    free_port,
    make_self_signed_cert,
    running_smtp_server,
    silent_tcp_server,
)

pytestmark = pytest.mark.timeout(30)

USER = "mailer-user"
PASSWORD = "s3cr3t-Pässword!"  # distinctive, so any leak is easy to spot in logs
SENDER = "syncd@example.org"
RECIPIENT = "student@example.com"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_self_signed_cert(tmp_path_factory.mktemp("tls"))


def plain_message(subject: str = "Hello") -> EmailMessage:
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = RECIPIENT
    message["Subject"] = subject
    message["Message-ID"] = "<test-1@example.org>"
    message.set_content("Body text\n")
    return message


def settings_for(port: int, **overrides: object) -> SmtpSettings:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": port,
        "timeout": 5.0,
        "from_address": SENDER,
        "local_hostname": "client.test",
    }
    values.update(overrides)
    return SmtpSettings(**values)  # type: ignore[arg-type]


def test_delivers_message_with_envelope_from_headers() -> None:
    with running_smtp_server() as server:
        send_message(settings_for(server.port), plain_message("Greetings"))
        [mail] = server.wait_for_messages(1)
    assert mail.mail_from == SENDER
    assert mail.rcpt_tos == (RECIPIENT,)
    assert mail.message["Subject"] == "Greetings"
    assert mail.message.get_content().splitlines() == ["Body text"]


def test_invite_arrives_with_its_calendar_intact() -> None:
    details = InviteDetails(
        booking_id="0123456789abcdef0123456789abcdef",
        sequence=0,
        start=datetime(2027, 3, 8, 14, 0, tzinfo=UTC),
        end=datetime(2027, 3, 8, 15, 0, tzinfo=UTC),
        service_name="Career chat",
        mentor_name="Ana Mentor",
        mentor_email="ana@example.org",
        student_name="Sam Student",
        student_email=RECIPIENT,
        student_timezone="America/New_York",
        organizer_email="bookings@example.org",
        dtstamp=datetime(2027, 3, 1, 12, 0, tzinfo=UTC),
    )
    with running_smtp_server() as server:
        send_message(
            settings_for(server.port), build_message(details, "REQUEST", from_address=SENDER)
        )
        [mail] = server.wait_for_messages(1)
    [calendar_part] = [p for p in mail.message.walk() if p.get_content_type() == "text/calendar"]
    received = calendar_part.get_content().replace("\r\n", "\n")
    assert received == build_calendar(details, "REQUEST").replace("\r\n", "\n")
    assert mail.rcpt_tos == (RECIPIENT,)


def test_starttls_with_login_delivers_and_never_logs_the_password(
    tls_files: TlsFiles, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with running_smtp_server(auth=(USER, PASSWORD), starttls=tls_files) as server:
        settings = settings_for(
            server.port,
            security="starttls",
            username=USER,
            password=PASSWORD,
            ca_file=str(tls_files.cert_path),
        )
        send_message(settings, plain_message())
        server.wait_for_messages(1)
        assert server.logins == [USER]
    for secret in _password_forms(PASSWORD):
        assert secret not in caplog.text
    assert "<test-1@example.org>" in caplog.text  # the log does say what was sent


def test_implicit_tls_with_login_delivers(tls_files: TlsFiles) -> None:
    with running_smtp_server(auth=(USER, PASSWORD), implicit_tls=tls_files) as server:
        settings = settings_for(
            server.port,
            security="ssl",
            username=USER,
            password=PASSWORD,
            ca_file=str(tls_files.cert_path),
        )
        send_message(settings, plain_message())
        assert len(server.wait_for_messages(1)) == 1
        assert server.logins == [USER]


def test_wrong_password_is_permanent(tls_files: TlsFiles) -> None:
    with running_smtp_server(auth=(USER, PASSWORD), starttls=tls_files) as server:
        settings = settings_for(
            server.port,
            security="starttls",
            username=USER,
            password="not-it",
            ca_file=str(tls_files.cert_path),
        )
        with pytest.raises(PermanentMailError):
            send_message(settings, plain_message())
        assert server.messages == []


def test_untrusted_certificate_is_permanent(tls_files: TlsFiles) -> None:
    with running_smtp_server(starttls=tls_files) as server:
        with pytest.raises(PermanentMailError, match="certificate"):
            send_message(settings_for(server.port, security="starttls"), plain_message())
        assert server.messages == []


def test_username_without_password_is_permanent() -> None:
    with running_smtp_server() as server:
        with pytest.raises(PermanentMailError, match="password"):
            send_message(settings_for(server.port, username=USER), plain_message())
        assert server.messages == []


def test_deferred_recipient_is_transient_and_a_retry_succeeds() -> None:
    with running_smtp_server() as server:
        server.reject_next_rcpt(451)
        with pytest.raises(TransientMailError, match="451"):
            send_message(settings_for(server.port), plain_message())
        assert server.messages == []
        send_message(settings_for(server.port), plain_message())
        assert len(server.wait_for_messages(1)) == 1


def test_rejected_recipient_is_permanent() -> None:
    with running_smtp_server() as server:
        server.reject_next_rcpt(550)
        with pytest.raises(PermanentMailError, match="550"):
            send_message(settings_for(server.port), plain_message())
        assert server.messages == []


def test_server_down_is_transient() -> None:
    started = time.monotonic()
    with pytest.raises(TransientMailError):
        send_message(settings_for(free_port(), timeout=2.0), plain_message())
    assert time.monotonic() - started < 2.0 + 1.0


def test_server_that_never_answers_is_transient_within_the_timeout() -> None:
    with silent_tcp_server() as port:
        started = time.monotonic()
        with pytest.raises(TransientMailError):
            send_message(settings_for(port, timeout=0.5), plain_message())
        elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 0.5 + 1.5


def test_password_is_hidden_from_repr() -> None:
    settings = SmtpSettings(username=USER, password=PASSWORD)
    assert PASSWORD not in repr(settings)
    assert PASSWORD not in str(settings)
    assert USER in repr(settings)


def _password_forms(password: str) -> list[str]:
    """The password as it could appear in a log: plain, and base64 as AUTH LOGIN/PLAIN send it."""
    plain_auth = f"\0{USER}\0{password}".encode()
    return [
        password,
        base64.b64encode(password.encode()).decode(),
        base64.b64encode(plain_auth).decode(),
    ]


def test_tls_files_are_written(tls_files: TlsFiles) -> None:
    # Guards the fixture itself: a silently empty certificate would make TLS tests meaningless.
    assert Path(tls_files.cert_path).read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert b"PRIVATE KEY" in Path(tls_files.key_path).read_bytes()


def test_ascii_login_without_tls_delivers() -> None:
    with running_smtp_server(auth=(USER, "plain-ascii-pw")) as server:
        settings = settings_for(server.port, username=USER, password="plain-ascii-pw")
        send_message(settings, plain_message())
        assert len(server.wait_for_messages(1)) == 1
        assert server.logins == [USER]


def test_missing_login_where_required_is_permanent() -> None:
    with running_smtp_server(auth=(USER, PASSWORD)) as server:
        with pytest.raises(PermanentMailError, match="530"):
            send_message(settings_for(server.port), plain_message())
        assert server.messages == []
