"""How syncd recognises its own booking events in mentors' calendars.

Booking ids are 32 lowercase hex characters (uuid4().hex): a valid Google event id (base32hex)
as they are, and the seed of the iCalendar UID shared by the calendar event and the invite.
"""

from __future__ import annotations

import re
import uuid

BOOKING_PROPERTY = "X-SYNCD-BOOKING-ID"  # iCalendar property on events syncd writes
GOOGLE_PRIVATE_KEY = "syncdBookingId"  # Google extendedProperties.private key
_UID_SUFFIX = "@syncd"
_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")


def new_booking_id() -> str:
    return uuid.uuid4().hex


def booking_uid(booking_id: str) -> str:
    return f"syncd-{booking_id}{_UID_SUFFIX}"


def booking_id_from_uid(uid: str) -> str | None:
    """The booking id if `uid` is one syncd minted, else None."""
    if not (uid.startswith("syncd-") and uid.endswith(_UID_SUFFIX)):
        return None
    candidate = uid[len("syncd-") : -len(_UID_SUFFIX)]
    return candidate if _ID_PATTERN.match(candidate) else None
