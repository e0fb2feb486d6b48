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
    with pytest.raises(ConfigError, match=r"\[database\] url must be a str"):
        load_config(write(tmp_path / "c.toml", "[database]\nurl = 5\n"))


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[smtp]\nhots = 'x'\n", "unknown option [smtp] hots"),
        ("[smtp]\nport = '25'\n", "[smtp] port must be a int"),
        ("[daemon]\nworkers = true\n", "[daemon] workers must be a int"),
        ("[http]\nenabled = 1\n", "[http] enabled must be a bool"),
    ],
)
def test_unknown_keys_and_bad_values_name_file_and_key(
    tmp_path: Path, text: str, fragment: str
) -> None:
    path = write(tmp_path / "bad.toml", text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(path) in str(error.value)
    assert fragment in str(error.value)


def test_the_example_config_is_valid() -> None:
    example = Path(__file__).resolve().parent.parent / "deploy" / "syncd.toml.example"
    assert load_config(example).path == example


def test_positive_options_refuse_zero_and_name_the_option(tmp_path: Path) -> None:
    config = load_config(write(tmp_path / "c.toml", "[caldav]\ntimeout_seconds = 0\n"))
    with pytest.raises(ConfigError, match=r"\[caldav\] timeout_seconds must be a positive number"):
        config.positive("caldav", "timeout_seconds", 15.0)
    assert load_config(None).positive("caldav", "timeout_seconds", 15.0) == 15.0
