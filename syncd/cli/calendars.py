"""`syncd calendar`, `syncd sync` and `syncd secret`: connecting mentors' calendars."""

from __future__ import annotations

import sys
from typing import Any

import click

from syncd.cli.base import AppContext, cli, emit_json, friendly_errors, pass_app
from syncd.errors import UserError
from syncd.timeutil import utc_now

# -- calendars (syncd.calendars, syncd.sync) ---------------------------------------------------


@cli.group()
def calendar() -> None:
    """Mentors' calendars: connect, list, configure, pull now."""


@calendar.group("add")
@click.argument("mentor_id")
@click.pass_context
def calendar_add(ctx: click.Context, mentor_id: str) -> None:
    """Connect a calendar account: `syncd calendar add MENTOR_ID caldav|google ...`."""
    ctx.meta["syncd.mentor_id"] = mentor_id


def _read_password(password_file: str | None, password_env: str | None) -> Any:
    """The password from a file ("-" = stdin) or an environment variable, never argv."""
    import os

    from syncd.secrets import Secret

    if (password_file is None) == (password_env is None):
        raise UserError("give exactly one of --password-file FILE or --password-env VAR")
    if password_env is not None:
        value = os.environ.get(password_env)
        if not value:
            raise UserError(f"environment variable {password_env} is not set")
        return Secret(value)
    assert password_file is not None
    try:
        if password_file == "-":
            text = sys.stdin.read()
        else:
            with open(password_file, encoding="utf-8") as handle:
                text = handle.read()
    except OSError as error:
        raise UserError(f"cannot read --password-file {password_file}: {error.strerror}") from None
    return Secret(text.rstrip("\r\n"))


def _print_connected(connected: Any) -> None:
    chosen = {c.remote_id for c in connected.calendars}
    click.echo(f"account {connected.account_id}: found {len(connected.found)} calendar(s)")
    for info in connected.found:
        row = next((c for c in connected.calendars if c.remote_id == info.remote_id), None)
        mark = f"added as {row.id}" if row else "not added"
        dest = ", destination" if row and row.is_destination else ""
        click.echo(f"  {info.name} <{info.remote_id}> tz={info.timezone or '-'}: {mark}{dest}")
    if not chosen:
        click.echo("  (no calendar added)")


@calendar_add.command("caldav")
@click.argument("url", required=False)
@click.option("--url", "url_option", metavar="URL", help="Server, principal or calendar URL.")
@click.option("--username", metavar="USER")
@click.option("--password-file", metavar="FILE", help="File holding the password ('-' = stdin).")
@click.option("--password-env", metavar="VAR", help="Environment variable holding the password.")
@click.option(
    "--calendar",
    "calendars",
    multiple=True,
    metavar="URL|NAME",
    help="Add only these (repeatable).",
)
@click.option(
    "--destination",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[URL|NAME]",
    help="The calendar that receives booked sessions.",
)
@click.pass_context
@friendly_errors
def calendar_add_caldav(
    ctx: click.Context,
    url: str | None,
    url_option: str | None,
    username: str | None,
    password_file: str | None,
    password_env: str | None,
    calendars: tuple[str, ...],
    destination: str | None,
) -> None:
    """Connect a CalDAV account (tests the connection first)."""
    from syncd import calendars as service

    app = ctx.find_object(AppContext)
    assert app is not None
    if (url is None) == (url_option is None):
        raise UserError("give the URL once, as an argument or with --url")
    password = _read_password(password_file, password_env)
    connected = service.connect_caldav(
        app.database(), app.config, ctx.meta["syncd.mentor_id"], str(url or url_option), username,
        password, service.Selection(calendars, destination),
    )  # fmt: skip
    _print_connected(connected)


@calendar_add.command("google")
@click.option(
    "--calendar-id",
    "calendar_ids",
    multiple=True,
    metavar="ID",
    help="Default: the primary calendar.",
)
@click.option(
    "--destination",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[ID]",
    help="The calendar that receives booked sessions.",
)
@click.option("--client-secrets", metavar="FILE", help="OAuth client JSON: runs the consent flow.")
@click.option("--token-file", metavar="FILE", help="An authorized-user JSON (no browser needed).")
@click.pass_context
@friendly_errors
def calendar_add_google(
    ctx: click.Context,
    calendar_ids: tuple[str, ...],
    destination: str | None,
    client_secrets: str | None,
    token_file: str | None,
) -> None:
    """Connect a Google account (prints the consent URL, or takes a token file)."""
    from syncd import calendars as service

    app = ctx.find_object(AppContext)
    assert app is not None
    if (client_secrets is None) == (token_file is None):
        raise UserError("give exactly one of --client-secrets FILE or --token-file FILE")
    selection = service.Selection(calendar_ids, destination)
    mentor_id = ctx.meta["syncd.mentor_id"]
    if token_file is not None:
        connected = service.connect_google_token_file(
            app.database(), app.config, mentor_id, token_file, selection
        )
    else:
        assert client_secrets is not None
        connected = service.connect_google_flow(
            app.database(), app.config, mentor_id, client_secrets, selection
        )
    _print_connected(connected)


@calendar.command("list")
@click.argument("mentor_id", required=False)
@click.option("--json", "as_json", is_flag=True)
@pass_app
@friendly_errors
def calendar_list(app: AppContext, mentor_id: str | None, as_json: bool) -> None:
    """Connected calendars and their sync status."""
    from syncd.calendars import calendar_statuses

    statuses = calendar_statuses(app.database(), mentor_id)
    if as_json:
        emit_json([status.as_json() for status in statuses])
        return
    for s in statuses:
        flags = [
            f for f, on in (("blocks", s.blocks_time), ("destination", s.is_destination)) if on
        ]
        state = (
            "NEEDS RECONNECT"
            if s.needs_reconnect
            else ("ok" if s.last_success else "not synced yet")
        )
        if s.consecutive_failures and not s.needs_reconnect:
            state = f"failing ({s.consecutive_failures}x)"
        last = s.last_success.isoformat() if s.last_success else "-"
        click.echo(
            f"{s.id}  {s.mentor_id}  {s.provider}  {s.name}  [{', '.join(flags) or 'ignored'}]  {state}  last sync {last}"
        )
        if s.last_error:
            click.echo(f"    last error: {s.last_error}")


@calendar.command("set")
@click.argument("calendar_id", type=int)
@click.option("--blocks/--no-blocks", default=None, help="Whether its events block time.")
@click.option("--destination", is_flag=True, help="Make it the mentor's destination calendar.")
@pass_app
@friendly_errors
def calendar_set(app: AppContext, calendar_id: int, blocks: bool | None, destination: bool) -> None:
    """Change whether a calendar blocks time, or make it the destination."""
    from syncd.calendars import configure_calendar

    status = configure_calendar(app.database(), calendar_id, blocks=blocks, destination=destination)
    click.echo(
        f"calendar {status.id}: blocks={status.blocks_time} destination={status.is_destination}"
    )


@calendar.command("remove")
@click.argument("calendar_id", type=int)
@pass_app
@friendly_errors
def calendar_remove(app: AppContext, calendar_id: int) -> None:
    """Forget a calendar and its busy time (the events in it stay)."""
    from syncd.calendars import remove_calendar

    remove_calendar(app.database(), calendar_id, config=app.config)
    click.echo(f"removed calendar {calendar_id}")


@calendar.command("sync")
@click.argument("calendar_id", type=int, required=False)
@click.option("--mentor", "mentor_id", metavar="ID", help="Only this mentor's calendars.")
@pass_app
@friendly_errors
def calendar_sync(app: AppContext, calendar_id: int | None, mentor_id: str | None) -> None:
    """Pull calendars now (all, one, or a mentor's) and print a summary."""
    from syncd.sync import sync_now

    ids = [calendar_id] if calendar_id is not None else None
    outcomes = sync_now(
        app.database(), app.config, calendar_ids=ids, mentor_id=mentor_id, now=utc_now()
    )
    for outcome in outcomes:
        r = outcome.result
        if r is None:
            click.echo(f"calendar {outcome.calendar_id}: failed: {outcome.error}")
        else:
            kind = "full" if r.full else "incremental"
            click.echo(
                f"calendar {r.calendar_id}: {kind}, {r.upserted} changed, {r.deleted} deleted, {len(r.malformed)} malformed"
            )
    if any(outcome.result is None for outcome in outcomes):
        sys.exit(1)


@cli.command("sync")
@click.option("--mentor", "mentor_id", metavar="ID", help="Only this mentor's calendars.")
@click.pass_context
def sync_command(ctx: click.Context, mentor_id: str | None) -> None:
    """One pull pass over every calendar (or a mentor's) now; prints a summary."""
    ctx.invoke(calendar_sync, calendar_id=None, mentor_id=mentor_id)


@cli.group()
def secret() -> None:
    """The key that encrypts calendar credentials at rest."""


@secret.command("generate")
def secret_generate() -> None:
    """Print a new secret key (for $SYNCD_SECRET_KEY or the key file)."""
    from syncd.secrets import generate_key

    click.echo(generate_key())
