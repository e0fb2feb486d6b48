from pathlib import Path

import pytest

from syncd.config import default_database_url, load_config, resolve_database_url, state_directory
from syncd.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_cli_url_beats_environment_and_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(write(tmp_path / "c.toml", '[database]\nurl = "sqlite:///file.db"\n'))
    monkeypatch.setenv("SYNCD_DATABASE_URL", "sqlite:///env.db")
    assert resolve_database_url("sqlite:///cli.db", config) == "sqlite:///cli.db"
    assert resolve_database_url(None, config) == "sqlite:///env.db"
    monkeypatch.delenv("SYNCD_DATABASE_URL")
    assert resolve_database_url(None, config) == "sqlite:///file.db"


def test_default_is_sqlite_in_the_state_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert (
        resolve_database_url(None, load_config(None)) == f"sqlite:///{tmp_path}/xdg/syncd/syncd.db"
    )
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path}/state:{tmp_path}/other")
    assert state_directory() == tmp_path / "state"
    assert default_database_url() == f"sqlite:///{tmp_path}/state/syncd.db"


def test_config_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "env.toml", '[database]\nurl = "sqlite:///x.db"\n')
    monkeypatch.setenv("SYNCD_CONFIG", str(path))
    assert load_config(None).get("database", "url") == "sqlite:///x.db"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[database\n", "invalid TOML"),
        ("[nonsense]\nx = 1\n", "unknown section [nonsense]"),
        ("database = 3\n", "[database] must be a table"),
    ],
)
def test_bad_files_name_the_file(tmp_path: Path, text: str, fragment: str) -> None:
    path = write(tmp_path / "bad.toml", text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(path) in str(error.value)
    assert fragment in str(error.value)


def test_wrong_option_type_names_the_option(tmp_path: Path) -> None:
    config = load_config(write(tmp_path / "c.toml", "[database]\nurl = 5\n"))
    with pytest.raises(ConfigError, match=r"\[database\] url must be a str"):
        resolve_database_url(None, config)


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")
