"""What every request handler needs, stored once on the application's state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, cast

from fastapi import Depends, Request

from syncd.api.coalesce import SingleFlight
from syncd.api.settings import ApiSettings
from syncd.booking import BookingService
from syncd.store.db import Database


@dataclass(frozen=True)
class ApiContext:
    db: Database
    settings: ApiSettings
    bookings: BookingService
    # Concurrent identical slot queries share one computation and its JSON (see syncd.api.coalesce).
    slots: SingleFlight[bytes] = field(default_factory=SingleFlight)


def get_context(request: Request) -> ApiContext:
    return cast(ApiContext, request.app.state.syncd)


Context = Annotated[ApiContext, Depends(get_context)]
