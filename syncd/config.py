"""Configuration: a TOML file with defaults, plus the rules for choosing the database.

The database is chosen by `--database URL`, then `$SYNCD_DATABASE_URL`, then `[database] url`
in the config file (`--config PATH`, else `$SYNCD_CONFIG`), then a SQLite file in the state
directory (`$STATE_DIRECTORY` under systemd, else the XDG data directory).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syncd.errors import ConfigError

# Every option syncd reads, with the TOML types it accepts. Unknown sections or keys and values
# of the wrong type are refused at load time with the file and the option named. Defaults live
# next to the code that uses each option (see deploy/syncd.toml.example for all of them).
_NUMBER = (int, float)
KNOWN_OPTIONS: dict[str, dict[str, tuple[type, ...]]] = {
    "database": {"url": (str,)},
    "daemon": {
        "workers": (int,),
        "network_workers": (int,),
        "lease_seconds": (int,),
        "batch_size": (int,),
        "shutdown_timeout_seconds": _NUMBER,
        "upgrade_schema": (bool,),
        "sync_check_seconds": _NUMBER,
        "outbox_interval_seconds": _NUMBER,
        "housekeeping_interval_seconds": _NUMBER,
        "busy_retention_hours": _NUMBER,
        "cancelled_events": (str,),
    },
    "sync": {
        "interval_seconds": (int,),
        "timeout_seconds": _NUMBER,
        "live_check": (bool,),
        "live_check_policy": (str,),
        "live_check_timeout_seconds": _NUMBER,
    },
    "http": {
        "listen": (str,),
        "enabled": (bool,),
        "public_url": (str,),
        "api_keys": (list,),
        "allow_private_caldav": (bool,),
    },
    "google": {
        "api_endpoint": (str,),
        "token_uri": (str,),
        "auth_uri": (str,),
        "client_secrets_file": (str,),
        "send_updates": (str,),
        "create_meet": (bool,),
        "requests_per_minute": (int,),
        "timeout_seconds": _NUMBER,
        "allow_insecure_push": (bool,),
    },
    "caldav": {"verify_tls": (bool,), "timeout_seconds": _NUMBER},
    "smtp": {
        "host": (str,),
        "port": (int,),
        "security": (str,),
        "username": (str,),
        "password_file": (str,),
        "from": (str,),
        "timeout_seconds": _NUMBER,
        "ca_file": (str,),
    },
    "invites": {
        "organizer": (str,),
        "organizer_name": (str,),
        "enabled": (bool,),
        "mail_dir": (str,),
    },
    "webhooks": {"url": (str,), "secret_file": (str,), "timeout_seconds": _NUMBER},
    "security": {"secret_key_file": (str,), "secret_key": (str,)},
}
KNOWN_SECTIONS = set(KNOWN_OPTIONS)


@dataclass(frozen=True)
class Config:
    """The parsed config file; sections other modules read are kept as plain tables."""

    path: Path | None = None
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)

    def section(self, name: str) -> dict[str, Any]:
        return self.sections.get(name, {})

    def get(self, section: str, option: str, default: Any = None) -> Any:
        return self.section(section).get(option, default)

    def require_type(self, section: str, option: str, kind: type, default: Any) -> Any:
        """The option's value, checked against `kind`, with an error naming file and option."""
        value = self.get(section, option, default)
        if value is not None and not isinstance(value, kind):
            raise ConfigError(
                f"{self.path or 'config'}: [{section}] {option} must be a {kind.__name__}, "
                f"got {value!r}"
            )
        return value

    def positive(self, section: str, option: str, default: float) -> float:
        """A number option that must be above zero (its type was checked at load time)."""
        value = self.get(section, option, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(
                f"{self.path or 'config'}: [{section}] {option} must be a positive number, "
                f"got {value!r}"
            )
        return float(value)


def load_config(path: str | os.PathLike[str] | None) -> Config:
    """Read the config file; a missing explicit file is an error, no file at all is fine."""
    chosen = path or os.environ.get("SYNCD_CONFIG")
    if not chosen:
        return Config()
    file = Path(chosen)
    try:
        with file.open("rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{file}: config file not found") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{file}: invalid TOML: {error}") from None
    return Config(path=file, sections=_check_sections(file, raw))


def _check_sections(file: Path, raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    sections: dict[str, dict[str, Any]] = {}
    for name, table in raw.items():
        if name not in KNOWN_OPTIONS:
            known = ", ".join(sorted(KNOWN_OPTIONS))
            raise ConfigError(f"{file}: unknown section [{name}] (known: {known})")
        if not isinstance(table, dict):
            raise ConfigError(f"{file}: [{name}] must be a table")
        for key, value in table.items():
            _check_option(file, name, key, value)
        sections[name] = table
    return sections


def _check_option(file: Path, section: str, key: str, value: Any) -> None:
    kinds = KNOWN_OPTIONS[section].get(key)
    if kinds is None:
        known = ", ".join(sorted(KNOWN_OPTIONS[section]))
        raise ConfigError(f"{file}: unknown option [{section}] {key} (known: {known})")
    # TOML booleans are ints to Python: never accept one where a number is meant.
    wrong_bool = isinstance(value, bool) and bool not in kinds
    if wrong_bool or not isinstance(value, kinds):
        names = " or ".join(kind.__name__ for kind in kinds)
        raise ConfigError(f"{file}: [{section}] {key} must be a {names}, got {value!r}")


def state_directory() -> Path:
    """Where the embedded database and other state live."""
    systemd_dirs = os.environ.get("STATE_DIRECTORY")
    if systemd_dirs:
        return Path(systemd_dirs.split(":")[0])
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "syncd"


def default_database_url() -> str:
    return f"sqlite:///{state_directory() / 'syncd.db'}"


def resolve_database_url(cli_url: str | None, config: Config) -> str:
    if cli_url:
        return cli_url
    env_url = os.environ.get("SYNCD_DATABASE_URL")
    if env_url:
        return env_url
    configured = config.require_type("database", "url", str, None)
    if configured:
        return str(configured)
    return default_database_url()
