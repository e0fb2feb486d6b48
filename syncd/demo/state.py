"""The demo's state folder: private files, the config and the environment pointing at them."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from syncd.demo.common import HOST
from syncd.demo.seed import MENTORS
from syncd.secrets import generate_key


@dataclass(frozen=True)
class DemoState:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "syncd.toml"

    @property
    def database(self) -> Path:
        return self.root / "syncd.db"

    @property
    def secret_key(self) -> Path:
        return self.root / "secret-key"

    @property
    def mail(self) -> Path:
        return self.root / "mail"

    @property
    def radicale(self) -> Path:
        return self.root / "radicale"

    def password(self, mentor_id: str) -> Path:
        return self.radicale / f"{mentor_id}.password"


def private_file(path: Path, make: Callable[[], str]) -> str:
    """The content of `path`, first created (mode 0600) from `make()` when missing."""
    if not path.exists():
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(make() + "\n")
    path.chmod(0o600)
    return path.read_text(encoding="utf-8").strip()


def prepare_state(state: DemoState) -> str:
    """Create the folders and private files; returns the secret key material."""
    state.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    state.radicale.mkdir(exist_ok=True)
    lines = [f"{m.id}:{private_file(state.password(m.id), secrets.token_urlsafe)}" for m in MENTORS]
    htpasswd = state.radicale / "htpasswd"
    htpasswd.write_text("\n".join(lines) + "\n", encoding="utf-8")
    htpasswd.chmod(0o600)
    return private_file(state.secret_key, generate_key)


def toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def write_config(state: DemoState, daemon_port: int) -> None:
    listen = f"{HOST}:{daemon_port}"
    state.config.write_text(
        "# Written by `make demo` on every run (ports may change).\n"
        f"[database]\nurl = {toml_string(f'sqlite:///{state.database}')}\n\n"
        f"[http]\nlisten = {toml_string(listen)}\n"
        f"public_url = {toml_string(f'http://{listen}')}\n"
        "allow_private_caldav = true  # the demo's Radicale is on 127.0.0.1\n\n"
        f"[invites]\nmail_dir = {toml_string(str(state.mail))}\n\n"
        f"[security]\nsecret_key_file = {toml_string(str(state.secret_key))}\n\n"
        "[sync]\ninterval_seconds = 60\n\n[daemon]\nsync_check_seconds = 10\n",
        encoding="utf-8",
    )


def point_environment_at(state: DemoState, key: str) -> None:
    """The in-process CLI and the daemon read the demo's config and key from here."""
    os.environ["SYNCD_CONFIG"] = str(state.config)
    os.environ["SYNCD_SECRET_KEY"] = key
    os.environ.pop("SYNCD_DATABASE_URL", None)
