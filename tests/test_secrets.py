"""Credentials at rest: key sources, encryption round trip, clear errors, nothing leaks."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from syncd.config import Config
from syncd.errors import ConfigError
from syncd.secrets import (
    Secret,
    SecretBox,
    SecretKeyMissing,
    UndecryptableSecret,
    generate_key,
    load_key_material,
    secret_box,
)

KEY = generate_key()


def test_round_trip_and_ciphertext_hides_the_plaintext() -> None:
    box = SecretBox(KEY)
    token = box.encrypt(Secret("hunter2-password"))
    assert "hunter2" not in token
    assert box.decrypt(token).reveal() == "hunter2-password"


def test_another_key_cannot_decrypt() -> None:
    token = SecretBox(KEY).encrypt("pw")
    with pytest.raises(UndecryptableSecret, match="secret key"):
        SecretBox(generate_key()).decrypt(token)


def test_reprs_and_logs_hide_secrets(caplog: pytest.LogCaptureFixture) -> None:
    secret, box = Secret("hunter2"), SecretBox(KEY)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("connecting with %s via %r", secret, box)
    assert "hunter2" not in caplog.text and KEY not in caplog.text
    assert "hunter2" not in repr(secret) and KEY not in repr(box) and "hunter2" not in f"{secret}"


def test_key_sources_in_order(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    credentials = tmp_path / "creds"
    credentials.mkdir()
    (credentials / "syncd-secret-key").write_text("c" * 40)
    config = Config(sections={"security": {"secret_key_file": str(key_file)}})
    assert load_key_material(config, {"SYNCD_SECRET_KEY": "e" * 40}) == "e" * 40
    assert load_key_material(config, {}) == KEY
    systemd = {"CREDENTIALS_DIRECTORY": str(credentials)}
    assert load_key_material(Config(), systemd) == "c" * 40
    assert load_key_material(Config(), {}) is None


def test_missing_key_is_a_clear_error() -> None:
    with pytest.raises(SecretKeyMissing, match="syncd secret generate"):
        secret_box(Config(), {})


def test_short_or_unreadable_keys_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least"):
        SecretBox("short")
    config = Config(sections={"security": {"secret_key_file": str(tmp_path / "missing")}})
    with pytest.raises(ConfigError, match="cannot read"):
        secret_box(config, {})


def test_generated_keys_differ_and_work() -> None:
    assert generate_key() != generate_key()
    assert SecretBox(generate_key()).encrypt("x")
