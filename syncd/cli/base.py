"""The root `syncd` command group, its shared context, and the one place that turns errors
into a single line on stderr (exit status 1)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import click
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from syncd import __version__
from syncd import availability as engine
from syncd.config import Config, load_config, resolve_database_url
from syncd.errors import SyncdError, UserError
from syncd.store.db import Database

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class AppContext:
    config_path: str | None
    database_url: str | None
    _config: Config | None = None
    _db: Database | None = None
    _checked: bool = field(default=False)

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    def database(self, *, upgrade: bool = True) -> Database:
        """The database, its schema brought up to date first (saying so on stderr)."""
        if self._db is None:
            self._db = Database(resolve_database_url(self.database_url, self.config))
        if upgrade and not self._checked:
            if self._db.needs_upgrade():
                click.echo("syncd: database schema is not current; upgrading it now", err=True)
                self._db.upgrade()
            self._checked = True
        return self._db

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.database().write_session() as session:
            yield session

    def close(self) -> None:
        if self._db is not None:
            self._db.dispose()


def friendly_errors(func: Callable[P, R]) -> Callable[P, R]:
    """One clear line on stderr and exit 1 instead of a traceback."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (SyncdError, engine.AvailabilityError) as error:
            _fail(str(error))
        except OperationalError as error:
            _fail(f"database error: {error.orig}")
        raise AssertionError("unreachable")

    return wrapper


def _fail(message: str) -> None:
    click.echo(f"syncd: error: {message}", err=True)
    sys.exit(1)


pass_app = click.make_pass_decorator(AppContext)


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config", "config_path", metavar="PATH", help="TOML config file (or $SYNCD_CONFIG)."
)
@click.option(
    "--database", "database_url", metavar="URL", help="Database URL (or $SYNCD_DATABASE_URL)."
)
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
@click.version_option(__version__, prog_name="syncd")
@click.pass_context
def cli(
    ctx: click.Context, config_path: str | None, database_url: str | None, verbose: bool
) -> None:
    """syncd: calendar-integrated scheduling for 1-on-1 mentoring."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, stream=sys.stderr)
    app = AppContext(config_path, database_url)
    ctx.obj = app
    ctx.call_on_close(app.close)


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="syncd", standalone_mode=True)
    except UserError as error:  # raised outside a command, e.g. while closing
        _fail(str(error))
