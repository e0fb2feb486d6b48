"""SMTP delivery of ready-made messages, with failures sorted into retry-later and give-up.

The outbox decides about retries; this module only says which kind of failure it saw:
`TransientMailError` (4xx replies, connection trouble, timeouts) is worth another attempt,
`PermanentMailError` (5xx replies, refused credentials, TLS verification, missing server
features) is not going to fix itself.
"""

from __future__ import annotations

import base64
import logging
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Literal

from syncd.errors import SyncdError

log = logging.getLogger(__name__)

Security = Literal["none", "starttls", "ssl"]


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "localhost"
    port: int = 25
    security: Security = "none"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 20.0  # seconds, for the connection and for each reply
    from_address: str = "syncd@localhost"
    ca_file: str | None = None  # trust this CA bundle instead of the system one (private CAs)
    local_hostname: str | None = None  # EHLO name; None lets smtplib use the machine's FQDN


class MailError(SyncdError):
    """The message was not handed over to the SMTP server."""


class TransientMailError(MailError):
    """Worth retrying later: the server or the network may recover."""


class PermanentMailError(MailError):
    """Retrying the same message with the same settings will fail again."""


def send_message(settings: SmtpSettings, message: EmailMessage) -> None:
    """Deliver `message` to the configured SMTP server or raise a `MailError` subclass."""
    message_id, recipients = message.get("Message-ID", "?"), _recipients(message)
    log.info("sending %s to %s via %s:%d", message_id, recipients, settings.host, settings.port)
    try:
        refused = _deliver(settings, message)
    except smtplib.SMTPRecipientsRefused as error:
        raise _recipients_refused(error) from error
    except smtplib.SMTPResponseException as error:
        raise _reply_error(error.smtp_code, error.smtp_error) from error
    except smtplib.SMTPServerDisconnected as error:
        raise TransientMailError(f"SMTP server closed the connection: {error}") from error
    except smtplib.SMTPException as error:
        # smtplib's remaining errors name a feature the server lacks (STARTTLS, AUTH, SMTPUTF8).
        raise PermanentMailError(f"SMTP server cannot take this message: {error}") from error
    except ssl.SSLCertVerificationError as error:
        raise PermanentMailError(f"SMTP server certificate not trusted: {error}") from error
    except OSError as error:
        raise TransientMailError(f"cannot reach SMTP server: {error}") from error
    if refused:
        log.warning("%s was refused for some recipients: %s", message_id, sorted(refused))
    log.info("sent %s to %s", message_id, recipients)


def _deliver(settings: SmtpSettings, message: EmailMessage) -> dict[str, tuple[int, bytes]]:
    smtp = _connect(settings)
    try:
        _secure_and_login(smtp, settings)
        return smtp.send_message(message)
    finally:
        _quit_quietly(smtp)


def _quit_quietly(smtp: smtplib.SMTP) -> None:
    # Once DATA was accepted the message is delivered; a failing QUIT must not turn that into
    # an error, or the outbox would send a second copy.
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()


def _connect(settings: SmtpSettings) -> smtplib.SMTP:
    if settings.security == "ssl":
        return smtplib.SMTP_SSL(
            settings.host,
            settings.port,
            local_hostname=settings.local_hostname,
            timeout=settings.timeout,
            context=_tls_context(settings),
        )
    return smtplib.SMTP(
        settings.host,
        settings.port,
        local_hostname=settings.local_hostname,
        timeout=settings.timeout,
    )


def _secure_and_login(smtp: smtplib.SMTP, settings: SmtpSettings) -> None:
    if settings.security == "starttls":
        smtp.starttls(context=_tls_context(settings))
    if settings.username is not None:
        # A missing password is a configuration mistake, not something a retry can fix.
        if settings.password is None:
            raise PermanentMailError("SMTP username is set but no password was configured")
        _login(smtp, settings.username, settings.password)


def _login(smtp: smtplib.SMTP, username: str, password: str) -> None:
    if username.isascii() and password.isascii():
        smtp.login(username, password)  # negotiates CRAM-MD5 / PLAIN / LOGIN
        return
    # smtplib encodes credentials as ASCII; RFC 4616 PLAIN carries UTF-8, so send it ourselves.
    smtp.ehlo_or_helo_if_needed()
    if "PLAIN" not in smtp.esmtp_features.get("auth", "").upper().split():
        raise PermanentMailError("non-ASCII SMTP credentials need AUTH PLAIN; server lacks it")
    token = base64.b64encode(f"\0{username}\0{password}".encode()).decode("ascii")
    code, reply = smtp.docmd("AUTH", f"PLAIN {token}")
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, reply)


def _tls_context(settings: SmtpSettings) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=settings.ca_file)


def _recipients(message: EmailMessage) -> list[str]:
    return [
        address.addr_spec
        for header in ("To", "Cc", "Bcc")
        for address in getattr(message.get(header), "addresses", ())
    ]


def _recipients_refused(error: smtplib.SMTPRecipientsRefused) -> MailError:
    replies = error.recipients.values()
    summary = "; ".join(f"{code} {_text(reply)}" for code, reply in replies)
    if all(400 <= code < 500 for code, _ in replies):
        return TransientMailError(f"SMTP server deferred the recipients: {summary}")
    return PermanentMailError(f"SMTP server refused the recipients: {summary}")


def _reply_error(code: int, reply: bytes | str) -> MailError:
    text = f"SMTP server replied {code} {_text(reply)}"
    if code >= 500:
        return PermanentMailError(text)
    return TransientMailError(text)


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
