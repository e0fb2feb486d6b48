"""A calendar's sync state in words a mentor understands, instead of timestamps and exceptions.

The sync engine records `last_error` as "<ErrorClass>: <detail>", "needs reconnect: <detail>"
or "internal error: <class>"; the detail is for admins and may name URLs, so the mentor only
gets a sentence chosen from the kind of failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

_MINUTE, _HOUR, _DAY = 60, 3600, 86400
_REJECTED_HINTS = ("401", "403", "denied", "unauthori", "forbidden", "rejected", "password")


@dataclass(frozen=True)
class SyncFacts:
    """What the words are made from (a Calendar row plus its account's reconnect flag)."""

    provider: str
    last_success: datetime | None
    last_error: str | None
    consecutive_failures: int
    needs_reconnect: bool


def ago(moment: datetime, now: datetime) -> str:
    """ "just now", "3 minutes ago", "1 hour ago", "2 days ago"."""
    seconds = int((now - moment).total_seconds())
    if seconds < _MINUTE:
        return "just now"
    for size, unit in ((_DAY, "day"), (_HOUR, "hour"), (_MINUTE, "minute")):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'} ago"
    return "just now"  # unreachable: seconds >= _MINUTE here


def last_sync_words(facts: SyncFacts, now: datetime) -> str:
    if facts.last_success is None:
        return "not synced yet" if not facts.last_error else "never synced successfully"
    return f"synced {ago(facts.last_success, now)}"


def problem_words(facts: SyncFacts) -> str | None:
    """None when all is well; else one sentence saying what is wrong and what to do."""
    error = (facts.last_error or "").lower()
    if facts.needs_reconnect:
        return _reconnect_words(facts.provider, error)
    if not error:
        return None
    if error.startswith("internal error"):
        return "syncd hit an internal error while syncing; the admin has the details"
    if error.startswith("transienterror"):
        tries = facts.consecutive_failures
        again = f" ({tries} tries so far)" if tries > 1 else ""
        return f"the calendar server could not be reached; syncd keeps retrying{again}"
    return "the calendar server sent an answer syncd could not use; it will try again"


def _reconnect_words(provider: str, error: str) -> str:
    if "decrypt" in error:
        return "the stored password can no longer be read — reconnect"
    if provider == "google":
        return "Google access was revoked or has expired — reconnect"
    if any(hint in error for hint in _REJECTED_HINTS):
        return "the server rejected the password — reconnect"
    return "needs reconnect"
