"""syncd's error family. The CLI and HTTP edges turn these into one clear message."""

from __future__ import annotations


class SyncdError(Exception):
    """Base of every error syncd raises on purpose."""


class UserError(SyncdError):
    """Bad input or a refused request: the message is shown as is, without a traceback."""


class NotFoundError(UserError):
    """A named mentor, student, service or booking does not exist."""


class ConfigError(UserError):
    """The configuration file or an option is invalid; the message names the file and option."""


class BookingRefused(UserError):
    """A booking, cancel or reschedule was refused; `reason` is a stable machine-readable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
