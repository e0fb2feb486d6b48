"""The `syncd` admin command line (a contract: admins script these names and flags).

Each module adds its commands to the root group defined in `base`.
"""

from syncd.cli import bookings, calendars, directory, run  # noqa: F401 - registers the commands
from syncd.cli.base import cli, main

__all__ = ["cli", "main"]
