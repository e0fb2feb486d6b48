"""Credentials at rest (CalDAV passwords, Google refresh tokens), encrypted with the admin's key.

The key material comes from, in order: `$SYNCD_SECRET_KEY`, the file named by
`[security] secret_key_file`, the systemd credential `$CREDENTIALS_DIRECTORY/syncd-secret-key`
(`LoadCredential=syncd-secret-key:/etc/syncd/secret-key`), then `[security] secret_key`.
The same material also signs page links (syncd.links), so the Fernet key is derived from it
with HKDF under a purpose label instead of being used directly: one admin secret, two
independent keys. `syncd secret generate` prints fresh material.

Nothing here logs a key or a plaintext, and reprs hide them.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from syncd.config import Config
from syncd.errors import ConfigError, UserError

ENV_VAR = "SYNCD_SECRET_KEY"
CREDENTIAL_NAME = "syncd-secret-key"
MIN_KEY_CHARS = 32
_PURPOSE = b"syncd credentials at rest v1"


class SecretKeyMissing(ConfigError):
    """A credential must be encrypted or decrypted and no key is configured."""


class UndecryptableSecret(UserError):
    """A stored credential cannot be decrypted: the key changed, or the data is damaged."""


class Secret:
    """A plaintext secret that never shows itself in reprs, f-strings or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class SecretBox:
    """Encrypts and decrypts credentials with the key derived from the admin's material."""

    def __init__(self, key_material: str) -> None:
        self._fernet = Fernet(derive_fernet_key(key_material))

    def encrypt(self, plaintext: str | Secret) -> str:
        value = plaintext.reveal() if isinstance(plaintext, Secret) else plaintext
        return self._fernet.encrypt(value.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> Secret:
        try:
            return Secret(self._fernet.decrypt(token.encode("ascii")).decode("utf-8"))
        except (InvalidToken, UnicodeError, ValueError):
            raise UndecryptableSecret(
                "a stored credential cannot be decrypted: the secret key is not the one it was "
                "stored with (reconnect the calendar, or restore the old key)"
            ) from None

    def __repr__(self) -> str:
        return "SecretBox(key=***)"


def generate_key() -> str:
    """Fresh key material for `$SYNCD_SECRET_KEY` or the key file (44 url-safe characters)."""
    return Fernet.generate_key().decode("ascii")


def derive_fernet_key(material: str) -> bytes:
    if len(material) < MIN_KEY_CHARS:
        raise ConfigError(
            f"the secret key must be at least {MIN_KEY_CHARS} characters; "
            "create one with `syncd secret generate`"
        )
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_PURPOSE)
    return base64.urlsafe_b64encode(hkdf.derive(material.encode("utf-8")))


def load_key_material(config: Config, environ: Mapping[str, str] | None = None) -> str | None:
    """The admin's key material from the first source that has one; None when none does."""
    env = os.environ if environ is None else environ
    if env.get(ENV_VAR):
        return env[ENV_VAR].strip()
    key_file = config.require_type("security", "secret_key_file", str, None)
    if key_file:
        return _read_key_file(Path(key_file), f"[security] secret_key_file ({key_file})")
    credentials_dir = env.get("CREDENTIALS_DIRECTORY")
    if credentials_dir and (Path(credentials_dir) / CREDENTIAL_NAME).is_file():
        return _read_key_file(Path(credentials_dir) / CREDENTIAL_NAME, "systemd credential")
    inline = config.require_type("security", "secret_key", str, None)
    return str(inline).strip() if inline else None


def _read_key_file(path: Path, source: str) -> str:
    try:
        material = path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise ConfigError(f"cannot read the secret key from {source}: {error.strerror}") from None
    if not material:
        raise ConfigError(f"the secret key file of {source} is empty")
    return material


def secret_box(config: Config, environ: Mapping[str, str] | None = None) -> SecretBox:
    """The box for the configured key; a clear error when there is no key."""
    material = load_key_material(config, environ)
    if material is None:
        raise SecretKeyMissing(
            f"no secret key to encrypt calendar credentials: set ${ENV_VAR}, "
            "[security] secret_key_file, or the systemd credential "
            f"{CREDENTIAL_NAME}; create one with `syncd secret generate`"
        )
    return SecretBox(material)
