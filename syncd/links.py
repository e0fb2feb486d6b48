"""Signed, expiring links to the mentor and student pages.

A token is `sl1.<payload>.<mac>`: the payload (url-safe base64 of `kind:id:expiry`) says who the
link is for and until when; the MAC is HMAC-SHA256 over the payload with the secret key. Nothing
is stored: a link is valid exactly while its MAC checks and its expiry is in the future.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from syncd.config import Config
from syncd.errors import ConfigError, UserError
from syncd.secrets import load_key_material

LinkKind = Literal["mentor", "student"]
LINK_KINDS: tuple[LinkKind, ...] = ("mentor", "student")
PAGE_PATHS: dict[LinkKind, str] = {"mentor": "/m/", "student": "/s/"}
TOKEN_PREFIX = "sl1."
MAX_LINK_DAYS = 365
_MIN_SECRET_BYTES = 16


class InvalidLink(UserError):
    """The token is malformed, forged or expired. The message never repeats the token."""


@dataclass(frozen=True)
class LinkClaims:
    kind: LinkKind
    subject_id: str
    expires: datetime


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, payload: str) -> str:
    return _b64encode(hmac.new(secret, payload.encode("ascii"), hashlib.sha256).digest())


def sign_link(secret: bytes, kind: LinkKind, subject_id: str, expires: datetime) -> str:
    """A url-safe token granting `kind` page access for `subject_id` until `expires`."""
    if kind not in LINK_KINDS:
        raise UserError(f"link kind must be one of {', '.join(LINK_KINDS)}")
    if ":" in subject_id or not subject_id:
        raise UserError(f"invalid {kind} id {subject_id!r}")
    epoch = int(expires.astimezone(UTC).timestamp())
    payload = _b64encode(f"{kind}:{subject_id}:{epoch}".encode())
    return f"{TOKEN_PREFIX}{payload}.{_mac(secret, payload)}"


def verify_link(secret: bytes, token: str, *, now: datetime) -> LinkClaims:
    """The claims of a genuine, unexpired token; InvalidLink otherwise."""
    if not token.startswith(TOKEN_PREFIX) or token.count(".") != 2:
        raise InvalidLink("not a syncd link token")
    _, payload, mac = token.split(".")
    # Constant-time comparison, so the MAC cannot be guessed byte by byte from timings.
    if not hmac.compare_digest(
        mac.encode("ascii", "replace"), _mac(secret, payload).encode("ascii")
    ):
        raise InvalidLink("link signature does not match")
    claims = _parse_payload(payload)
    if claims.expires <= now:
        raise InvalidLink("link has expired; ask for a new one")
    return claims


def _parse_payload(payload: str) -> LinkClaims:
    try:
        kind, subject_id, epoch = _b64decode(payload).decode("utf-8").split(":")
        expires = datetime.fromtimestamp(int(epoch), UTC)
    except (ValueError, binascii.Error, OverflowError):
        raise InvalidLink("link payload is malformed") from None
    if kind not in LINK_KINDS:
        raise InvalidLink("link payload is malformed")
    return LinkClaims(kind, subject_id, expires)


def link_expiry(now: datetime, days: int) -> datetime:
    if not 1 <= days <= MAX_LINK_DAYS:
        raise UserError(f"a link lasts between 1 and {MAX_LINK_DAYS} days")
    return now + timedelta(days=days)


def page_url(public_url: str, kind: LinkKind, token: str) -> str:
    return public_url.rstrip("/") + PAGE_PATHS[kind] + token


def secret_key(config: Config, environ: Mapping[str, str] | None = None) -> bytes | None:
    """The admin's key from the same sources as credential encryption ($SYNCD_SECRET_KEY,
    [security] secret_key_file, the systemd credential, [security] secret_key); None if none."""
    value = load_key_material(config, environ)
    if not value:
        return None
    encoded = str(value).encode("utf-8")
    if len(encoded) < _MIN_SECRET_BYTES:
        raise ConfigError(
            f"{config.path or 'config'}: [security] secret_key must be at least "
            f"{_MIN_SECRET_BYTES} characters"
        )
    return encoded


def require_secret_key(config: Config, environ: Mapping[str, str] | None = None) -> bytes:
    key = secret_key(config, environ)
    if key is None:
        raise ConfigError("no secret key: set [security] secret_key or $SYNCD_SECRET_KEY")
    return key
