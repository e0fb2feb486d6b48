"""`make demo`: seed the embedded SQLite database with a small academy and print slots.

Two mentors in different zones (Madrid and New York), one service, one student in a third
zone (Kolkata); prints the next week's bookable slots in the student's zone. Running it
again reuses what exists.
"""

from __future__ import annotations

import sys

import click
from click.testing import CliRunner

from syncd.cli import cli
from syncd.config import default_database_url

SETUP = [
    ["mentor", "add", "ana", "--name", "Ana Ruiz", "--email", "ana@example.org", "--timezone", "Europe/Madrid"],
    ["mentor", "hours", "ana", "mon-fri 09:00-13:00", "mon-thu 16:00-19:00"],
    ["mentor", "add", "ben", "--name", "Ben Okafor", "--email", "ben@example.org", "--timezone", "America/New_York"],
    ["mentor", "hours", "ben", "mon-fri 08:00-12:00", "sat 10:00-12:00"],
    ["service", "add", "mentoring", "--name", "1-on-1 mentoring", "--duration", "45",
     "--buffer-after", "15", "--min-notice", "240", "--horizon-days", "21", "--step", "30"],
    ["service", "assign", "mentoring", "ana", "ben"],
    ["student", "add", "priya", "--name", "Priya Shah", "--email", "priya@example.org", "--timezone", "Asia/Kolkata"],
    ["quota", "grant", "priya", "mentoring", "--sessions", "4", "--renew", "monthly"],
]  # fmt: skip


def main() -> int:
    runner = CliRunner()
    url = default_database_url()
    click.echo(f"demo database: {url}")
    existing = runner.invoke(cli, ["mentor", "list", "--json"])
    if existing.exit_code != 0:
        click.echo(existing.output, err=True)
        return 1
    if '"ana"' not in existing.stdout:
        for argv in SETUP:
            result = runner.invoke(cli, argv)
            if result.exit_code != 0:
                click.echo(f"syncd {' '.join(argv)} failed: {result.output}", err=True)
                return 1
            click.echo(f"$ syncd {' '.join(argv)}\n  {result.stdout.strip()}")
    click.echo("\n$ syncd slots mentoring --tz Asia/Kolkata --days 7")
    slots = runner.invoke(cli, ["slots", "mentoring", "--tz", "Asia/Kolkata", "--days", "7"])
    click.echo(slots.output)
    quota = runner.invoke(cli, ["quota", "show", "priya"])
    click.echo(f"$ syncd quota show priya\n{quota.output}")
    return slots.exit_code


if __name__ == "__main__":
    sys.exit(main())
