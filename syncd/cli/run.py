"""`syncd run` (the daemon) and `syncd link` (signed page links)."""

from __future__ import annotations

import click

from syncd import directory
from syncd.cli.base import AppContext, cli, friendly_errors, pass_app
from syncd.timeutil import utc_now

# -- daemon -----------------------------------------------------------------------------------


@cli.command("run")
@click.option("--once", is_flag=True, help="Run every job once and exit (for cron and tests).")
@click.pass_context
@friendly_errors
def run_command(ctx: click.Context, once: bool) -> None:
    """Run the daemon: calendar sync, outbox, housekeeping, HTTP health and metrics."""
    from syncd import daemon  # the daemon's dependencies are only needed here

    app = ctx.find_object(AppContext)
    assert app is not None
    verbose = bool(ctx.find_root().params.get("verbose"))
    status = daemon.run(app.config_path, app.database_url, once=once, verbose=verbose)
    ctx.exit(status)


# -- page links -------------------------------------------------------------------------------


@cli.group()
def link() -> None:
    """Signed, expiring links to the mentor and student pages."""


def _print_link(app: AppContext, kind: str, subject_id: str, days: int) -> None:
    from syncd import links  # imported here: only these commands need it

    with app.session() as session:
        if kind == "mentor":
            directory.require_mentor(session, subject_id)
        else:
            directory.require_student(session, subject_id)
    expires = links.link_expiry(utc_now(), days)
    token = links.sign_link(links.require_secret_key(app.config), kind, subject_id, expires)  # type: ignore[arg-type]
    public_url = app.config.require_type("http", "public_url", str, "http://127.0.0.1:8080")
    click.echo(links.page_url(str(public_url), kind, token))  # type: ignore[arg-type]


@link.command("mentor")
@click.argument("mentor_id")
@click.option("--days", type=int, default=30, show_default=True, help="How long the link works.")
@pass_app
@friendly_errors
def link_mentor(app: AppContext, mentor_id: str, days: int) -> None:
    """Print a link to the mentor's page (hours, calendars)."""
    _print_link(app, "mentor", mentor_id, days)


@link.command("student")
@click.argument("student_id")
@click.option("--days", type=int, default=30, show_default=True, help="How long the link works.")
@pass_app
@friendly_errors
def link_student(app: AppContext, student_id: str, days: int) -> None:
    """Print a link to the student's booking page."""
    _print_link(app, "student", student_id, days)
