"""Structured logging that never prints secrets.

Output depends on where stderr goes: JSON lines for log collectors, readable text on a
terminal, and plain text without timestamps under systemd (journald stamps each line itself and
reads the `<N>` priority prefix). Every record passes a redaction filter first, and every
formatted line (tracebacks included) is redacted again, so a password given to a log call, an
extra field or an exception message does not reach the output.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

MASK = "***"

SECRET_KEYS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "secret",
        "client_secret",
        "refresh_token",
        "access_token",
        "id_token",
        "token",
        "api_key",
        "authorization",
        "secret_key",
        "credentials",
    }
)

# "credentials" is masked as an extra's key, but in prose ("credentials: set $X") it is no key.
_TEXT_KEYS = SECRET_KEYS - {"credentials"}
_KEY_ALTERNATIVES = "|".join(sorted((re.escape(key) for key in _TEXT_KEYS), key=len, reverse=True))
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization: Bearer abc / Basic abc (header style, also inside reprs and JSON).
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), rf"\1 {MASK}"),
    # password=..., "refresh_token": "...", client_secret: ... (query strings, JSON, reprs).
    (
        re.compile(
            rf"""(?i)\b({_KEY_ALTERNATIVES})(["']?\s*[=:]\s*["']?)(?!{re.escape(MASK)})([^\s"'&,;}}]+)"""
        ),
        rf"\1\2{MASK}",
    ),
    # Credentials in URLs: scheme://user:password@host
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+@", re.IGNORECASE), rf"\1{MASK}@"),
)

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's ANSI-coloured copy of the message
}


def redact_text(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return lowered in SECRET_KEYS or lowered.endswith(("_password", "_secret", "_token"))


def redact_value(key: str, value: Any) -> Any:
    """A copy of `value` safe to log: secret keys masked, strings scrubbed, containers walked."""
    if _is_secret_key(key) and value is not None:
        return MASK
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {str(k): redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(key, item) for item in value]
    return value


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS}


class RedactingFilter(logging.Filter):
    """Rewrites each record in place: the message is rendered and scrubbed, extras masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # bad %-args: keep the template, drop the args
            message = str(record.msg)
        record.msg, record.args = redact_text(message), None
        for key, value in extra_fields(record).items():
            setattr(record, key, redact_value(key, value))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, message, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(extra_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return redact_text(json.dumps(entry, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    """Human text; extras appended as key=value so nothing passed to a log call is lost."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = extra_fields(record)
        if extras:
            first, newline, rest = line.partition("\n")
            fields = " ".join(f"{k}={v}" for k, v in extras.items())
            line = f"{first} [{fields}]{newline}{rest}"
        return redact_text(line)


class JournalFormatter(TextFormatter):
    """For journald: no timestamp, and a `<N>` syslog priority prefix it turns into a level."""

    _PRIORITIES = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        priority = self._PRIORITIES.get(record.levelname, 6)
        return f"<{priority}>" + super().format(record)


def _writes_to_journal(stream: TextIO, env: Mapping[str, str]) -> bool:
    """systemd sets $JOURNAL_STREAM to the journal socket's device:inode; a child process run
    from a shell inherits the variable, so it only counts when stderr really is that socket."""
    expected = env.get("JOURNAL_STREAM")
    if not expected:
        return False
    try:
        stat = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return True  # not a real file (tests, wrappers): trust the variable
    return expected == f"{stat.st_dev}:{stat.st_ino}"


def choose_formatter(stream: TextIO, env: Mapping[str, str] = os.environ) -> logging.Formatter:
    if _writes_to_journal(stream, env):
        return JournalFormatter()
    if stream.isatty():
        return TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    return JsonFormatter()


def configure_logging(
    level: int = logging.INFO,
    stream: TextIO | None = None,
    env: Mapping[str, str] = os.environ,
) -> logging.Handler:
    """Replace the root handlers with one redacting handler on `stream` (default stderr)."""
    target = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(target)
    handler.setFormatter(choose_formatter(target, env))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Third-party chatter that would drown the daemon's own messages at INFO.
    for noisy in ("apscheduler", "alembic", "uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    return handler
