"""Names, limits and the error type shared by the demo's modules."""

from __future__ import annotations

import click

HOST = "127.0.0.1"
STARTUP_SECONDS = 20.0  # bounded waits for Radicale and the daemon to answer
STOP_SECONDS = 15.0  # bounded waits for them to stop
HTTP_TIMEOUT = 10.0
STUDENT, STUDENT_ZONE, SERVICE = "priya", "Asia/Kolkata", "mentoring"


class DemoError(click.ClickException):
    """A step failed; the message says which and why."""
