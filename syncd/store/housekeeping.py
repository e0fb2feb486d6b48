"""Queries for the daemon's housekeeping jobs: pruning the busy cache, outbox backlog."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from syncd.store.models import BusyInterval, OutboxItem


def delete_busy_ended_before(session: Session, cutoff: datetime) -> int:
    """Remove cached busy occurrences that ended before `cutoff`; returns how many."""
    result = session.execute(
        delete(BusyInterval)
        .where(BusyInterval.end < cutoff)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class OutboxBacklog:
    pending: int
    oldest_due: datetime | None  # next_attempt_at of the longest-waiting due row


def outbox_backlog(session: Session, now: datetime) -> OutboxBacklog:
    pending = session.scalar(
        select(func.count()).select_from(OutboxItem).where(OutboxItem.status == "pending")
    )
    # func.min() keeps the column's type, so the UTC decorator hands back an aware datetime.
    oldest = session.scalar(
        select(func.min(OutboxItem.next_attempt_at)).where(
            OutboxItem.status == "pending", OutboxItem.next_attempt_at <= now
        )
    )
    return OutboxBacklog(pending=int(pending or 0), oldest_due=oldest)
