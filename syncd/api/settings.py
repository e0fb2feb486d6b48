"""What the HTTP face needs from the configuration: API keys, the secret key, its public URL."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, cast

from syncd import links
from syncd.config import Config
from syncd.errors import ConfigError
from syncd.timeutil import utc_now

KeyRole = Literal["admin", "app", "read-only"]
KEY_ROLES: tuple[KeyRole, ...] = ("admin", "app", "read-only")
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8080"
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ApiKey:
    """A configured key: only its SHA-256 is known, never the key itself."""

    name: str
    role: KeyRole
    key_sha256: str


@dataclass(frozen=True)
class ApiSettings:
    api_keys: tuple[ApiKey, ...] = ()
    secret_key: bytes | None = None
    public_url: str = DEFAULT_PUBLIC_URL
    allow_private_caldav: bool = False
    organizer_email: str = "syncd@localhost"
    clock: Callable[[], datetime] = field(default=utc_now)
    # The whole config, for the services the pages call (calendar connect reads [caldav],
    # [google] and the key that encrypts credentials from it).
    config: Config = field(default_factory=Config)

    @classmethod
    def from_config(cls, config: Config, environ: Mapping[str, str] | None = None) -> ApiSettings:
        public_url = config.require_type("http", "public_url", str, DEFAULT_PUBLIC_URL)
        return cls(
            api_keys=parse_api_keys(config),
            secret_key=links.secret_key(config, environ),
            public_url=str(public_url),
            allow_private_caldav=bool(
                config.require_type("http", "allow_private_caldav", bool, False)
            ),
            organizer_email=str(config.get("invites", "organizer", None) or "syncd@localhost"),
            config=config,
        )


def parse_api_keys(config: Config) -> tuple[ApiKey, ...]:
    entries = config.require_type("http", "api_keys", list, [])
    return tuple(_parse_api_key(config, index, entry) for index, entry in enumerate(entries))


def _parse_api_key(config: Config, index: int, entry: Any) -> ApiKey:
    where = f"{config.path or 'config'}: [http] api_keys[{index}]"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be a table {{key_sha256, role, name}}")
    digest = str(entry.get("key_sha256", "")).lower()
    if not _SHA256_HEX.match(digest):
        raise ConfigError(f"{where}.key_sha256 must be 64 hex digits (sha256 of the key)")
    role = entry.get("role")
    if role not in KEY_ROLES:
        raise ConfigError(f"{where}.role must be one of {', '.join(KEY_ROLES)}")
    name = str(entry.get("name") or f"key{index}")
    return ApiKey(name=name, role=cast(KeyRole, role), key_sha256=digest)
