"""`POST /google/push`: Google's push notifications for `events.watch` channels.

No API key: Google authenticates with the channel's token in X-Goog-Channel-Token (see
syncd.push). Answers at once; the pull itself runs in the sync job, which this wakes.
Google retries only 500/502/503/504 and treats every other non-2xx answer as a message
failure, so 403 (wrong token) and 404 (unknown channel, e.g. of a removed calendar) are final.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, Response, status

from syncd.push import PUSH_PATH, SYNC_JOB, PushOutcome, receive_notification
from syncd.store.db import Database
from syncd.timeutil import utc_now

_STATUS = {
    PushOutcome.ACCEPTED: status.HTTP_204_NO_CONTENT,
    PushOutcome.IGNORED: status.HTTP_204_NO_CONTENT,
    PushOutcome.UNKNOWN_CHANNEL: status.HTTP_404_NOT_FOUND,
    PushOutcome.BAD_TOKEN: status.HTTP_403_FORBIDDEN,
}


def push_router(
    db: Database, wake: Callable[[str], None], clock: Callable[[], datetime] = utc_now
) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.post(PUSH_PATH)
    def google_push(
        channel_id: Annotated[str | None, Header(alias="X-Goog-Channel-ID")] = None,
        token: Annotated[str | None, Header(alias="X-Goog-Channel-Token")] = None,
        state: Annotated[str | None, Header(alias="X-Goog-Resource-State")] = None,
    ) -> Response:
        # A plain def: FastAPI runs it in its thread pool, off the event loop.
        if not channel_id:
            return Response(status_code=status.HTTP_400_BAD_REQUEST)
        outcome = receive_notification(
            db, channel_id=channel_id, token=token, state=state, now=clock()
        )
        if outcome is PushOutcome.ACCEPTED:
            wake(SYNC_JOB)
        return Response(status_code=_STATUS[outcome])

    return router
