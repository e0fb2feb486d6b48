"""SQL for Google push-notification channels (`watch_channels`) and the calendars they watch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, delete, exists, or_, select, update
from sqlalchemy.orm import Session

from syncd.store.models import Calendar, CalendarAccount, PushChannel


@dataclass(frozen=True)
class WatchTarget:
    """A calendar that should have a channel, with what opening one needs."""

    calendar_id: int
    account_id: int
    remote_id: str


def _watchable() -> list[ColumnElement[bool]]:
    """Google calendars that block time and can be asked (their grant is not revoked)."""
    account_ok = exists().where(
        CalendarAccount.id == Calendar.account_id, CalendarAccount.needs_reconnect.is_(False)
    )
    return [
        Calendar.provider == "google",
        Calendar.blocks_time.is_(True),
        Calendar.needs_reconnect.is_(False),
        account_ok,
    ]


def calendars_needing_channel(session: Session, renew_before: datetime) -> list[WatchTarget]:
    """Watchable calendars without a channel that lasts beyond `renew_before`."""
    lasting = exists().where(
        PushChannel.calendar_id == Calendar.id, PushChannel.expiration > renew_before
    )
    query = select(Calendar.id, Calendar.account_id, Calendar.remote_id).where(
        *_watchable(), ~lasting
    )
    return [
        WatchTarget(calendar_id, account_id, remote_id)
        for calendar_id, account_id, remote_id in session.execute(query.order_by(Calendar.id))
        if account_id is not None
    ]


def watchable_calendar_ids(session: Session) -> set[int]:
    query = select(Calendar.id).where(*_watchable())
    return set(session.scalars(query))


def add_channel(
    session: Session,
    calendar_id: int,
    *,
    channel_id: str,
    resource_id: str,
    token: str,
    expiration: datetime,
) -> None:
    session.add(
        PushChannel(
            calendar_id=calendar_id,
            channel_id=channel_id,
            resource_id=resource_id,
            token=token,
            expiration=expiration,
        )
    )
    session.flush()


def channel_by_id(session: Session, channel_id: str) -> PushChannel | None:
    return session.scalars(select(PushChannel).where(PushChannel.channel_id == channel_id)).first()


def channels_of(session: Session, calendar_id: int) -> Sequence[PushChannel]:
    query = select(PushChannel).where(PushChannel.calendar_id == calendar_id)
    return session.scalars(query.order_by(PushChannel.id)).all()


def all_channels(session: Session) -> Sequence[PushChannel]:
    return session.scalars(select(PushChannel).order_by(PushChannel.id)).all()


def delete_channel(session: Session, channel_id: str) -> None:
    session.execute(delete(PushChannel).where(PushChannel.channel_id == channel_id))


def mark_calendar_due(session: Session, calendar_id: int, now: datetime) -> None:
    """Make the calendar due for a pull now (a push notification said it changed). A calendar
    backing off after failures keeps its backoff: notifications must not hammer a failing
    provider."""
    session.execute(
        update(Calendar)
        .where(
            Calendar.id == calendar_id,
            Calendar.consecutive_failures == 0,
            or_(Calendar.next_sync_at.is_(None), Calendar.next_sync_at > now),
        )
        .values(next_sync_at=now)
        .execution_options(synchronize_session=False)
    )
