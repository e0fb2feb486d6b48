"""Signed page links: round trip, expiry, forgery, config, and the `syncd link` command."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from syncd import directory
from syncd.cli import cli
from syncd.config import Config
from syncd.errors import ConfigError
from syncd.links import (
    InvalidLink,
    page_url,
    require_secret_key,
    secret_key,
    sign_link,
    verify_link,
)
from syncd.store.db import Database

SECRET = b"links-secret-0123456789abcdef"
NOW = datetime(2027, 3, 1, tzinfo=UTC)


def test_round_trip() -> None:
    token = sign_link(SECRET, "student", "sam.k_1", NOW + timedelta(days=2))
    claims = verify_link(SECRET, token, now=NOW)
    assert (claims.kind, claims.subject_id, claims.expires) == (
        "student",
        "sam.k_1",
        NOW + timedelta(days=2),
    )
    assert token.replace("-", "").replace("_", "").replace(".", "").isalnum()  # url-safe


def test_expired_link_is_refused() -> None:
    token = sign_link(SECRET, "mentor", "ana", NOW)
    with pytest.raises(InvalidLink, match="expired"):
        verify_link(SECRET, token, now=NOW)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # forged MAC
        lambda t: t.replace("sl1.", "sl1.x", 1),  # payload changed
        lambda t: "sl1.only-two",
    ],
)
def test_tampered_link_is_refused(mutate: object) -> None:
    token = sign_link(SECRET, "student", "sam", NOW + timedelta(days=1))
    with pytest.raises(InvalidLink):
        verify_link(SECRET, mutate(token), now=NOW)  # type: ignore[operator]


def test_other_kind_cannot_be_swapped_in() -> None:
    """Re-signing is impossible without the key; a token for another secret never verifies."""
    token = sign_link(b"another-secret-0123456789", "mentor", "ana", NOW + timedelta(days=1))
    with pytest.raises(InvalidLink, match="signature"):
        verify_link(SECRET, token, now=NOW)


def test_page_url() -> None:
    assert (
        page_url("https://book.example.org/", "student", "sl1.a.b")
        == "https://book.example.org/s/sl1.a.b"
    )
    assert (
        page_url("https://book.example.org", "mentor", "sl1.a.b")
        == "https://book.example.org/m/sl1.a.b"
    )


def test_secret_key_sources() -> None:
    config = Config(sections={"security": {"secret_key": "from-config-0123456789"}})
    assert secret_key(config, {}) == b"from-config-0123456789"
    assert (
        secret_key(config, {"SYNCD_SECRET_KEY": "from-env-0123456789abc"})
        == b"from-env-0123456789abc"
    )
    assert secret_key(Config(), {}) is None
    with pytest.raises(ConfigError, match="no secret key"):
        require_secret_key(Config(), {})
    with pytest.raises(ConfigError, match="at least"):
        secret_key(Config(sections={"security": {"secret_key": "short"}}), {})


def test_cli_link_prints_a_verifiable_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    database = Database(url)
    database.upgrade()
    with database.write_session() as session:
        directory.add_student(
            session, "sam", name="Sam", email="sam@example.org", timezone="Asia/Kolkata"
        )
    database.dispose()
    config = tmp_path / "syncd.toml"
    config.write_text('[http]\npublic_url = "https://book.example.org"\n')
    monkeypatch.setenv("SYNCD_SECRET_KEY", SECRET.decode())
    runner = CliRunner()
    result = runner.invoke(
        cli, ["--config", str(config), "--database", url, "link", "student", "sam", "--days", "3"]
    )
    assert result.exit_code == 0, result.output
    printed = result.output.strip()
    assert printed.startswith("https://book.example.org/s/sl1.")
    claims = verify_link(SECRET, printed.rsplit("/", 1)[1], now=datetime.now(UTC))
    assert claims.subject_id == "sam"
    unknown = runner.invoke(
        cli, ["--config", str(config), "--database", url, "link", "mentor", "ghost"]
    )
    assert unknown.exit_code == 1
    assert "unknown mentor" in unknown.output


def test_the_key_may_come_from_a_file_or_a_systemd_credential(tmp_path: Path) -> None:
    from syncd.config import Config
    from syncd.links import secret_key

    key = "k" * 40
    (tmp_path / "syncd-secret-key").write_text(key + "\n")
    assert secret_key(Config(), {"CREDENTIALS_DIRECTORY": str(tmp_path)}) == key.encode()
    from_file = Config(
        sections={"security": {"secret_key_file": str(tmp_path / "syncd-secret-key")}}
    )
    assert secret_key(from_file, {}) == key.encode()
    assert secret_key(Config(), {}) is None
