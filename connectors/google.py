"""Google Calendar API v3 connector, through the real google-api-python-client.

Choices worth knowing:
- The client is built from the bundled discovery document (`static_discovery=True`) with a
  configurable `api_endpoint`, so the same code runs against a protocol-faithful local server.
  Batch requests are never used: googleapiclient sends them to Google whatever the endpoint.
- A full pull is bounded with `timeMin = now - full_sync_lookback` (default 1 day, the start of
  syncd's busy window): older events cannot block a future slot, and Google still returns a
  sync token for such a listing. No `timeMax`: instances entering the window later would never
  show up as changes. Later pulls send `syncToken` and never timeMin/timeMax (Google → 400).
- Writes are idempotent by construction: the event id is the booking's `event_key`, so an
  insert retried after a crash meets 409 and becomes a patch to the desired state. An update
  with a known etag sends If-Match (412 → PreconditionFailed, as in the connector contract);
  deletes never do, since a cancelled booking's event must go whatever changed in it.
- One connector is used by one thread at a time (httplib2 is not thread-safe).
- Push notifications: `watch` opens an `events.watch` channel (the caller picks the address
  and token), `stop_channel` closes one. Google never renews a channel: a new one is opened
  before the old expires. The channel id is chosen before the first attempt, so a retry
  after a lost answer meets 400 channelIdNotUnique rather than opening a second channel.
- Every API call attempt (retries included) first takes a token from the account's
  `RequestBudget`, shared by all connectors of the same grant (client id + refresh token), so
  parallel pulls of one account stay under Google's per-user limit. Token refreshes are not
  API calls and do not count.
"""

from __future__ import annotations

import logging
import random
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import partial
from typing import Any, cast

# Neither ships type information and pyproject's mypy overrides do not list them.
import google_auth_httplib2  # type: ignore[import-untyped]
import httplib2  # type: ignore[import-untyped]
from google.auth.exceptions import RefreshError, TransportError
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from connectors.base import (
    AuthError,
    BusyPeriod,
    CalendarInfo,
    Changes,
    Connector,
    ConnectorError,
    EventRef,
    EventSpec,
    NotFound,
    PreconditionFailed,
    ProtocolError,
    RemoteObject,
    StaleSyncState,
    TransientError,
)
from connectors.google_auth import auth_error_from_refresh, credentials_from_authorized_user_info
from connectors.ratelimit import RequestBudget, account_key, shared_budget
from syncd.identity import GOOGLE_PRIVATE_KEY, booking_id_from_uid

log = logging.getLogger(__name__)

JsonDict = dict[str, Any]

EVENTS_PAGE_SIZE = 2500  # the largest page events.list serves
FREEBUSY_MAX_RANGE = timedelta(days=90)  # Google answers "time range too long" beyond this
FREEBUSY_MAX_CALENDARS = 50  # calendarExpansionMax
_EVENT_ID = re.compile(r"^[a-v0-9]{5,1024}$")  # base32hex, as events.insert requires
_RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
_RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
_WRITE_ROLES = frozenset({"owner", "writer"})
_SEND_UPDATES = frozenset({"all", "externalOnly", "none"})


@dataclass(frozen=True)
class WatchChannel:
    """An open events.watch channel, as Google answered it."""

    channel_id: str
    resource_id: str
    expiration: datetime  # aware UTC; Google stops notifying then


class AlreadyExists(PreconditionFailed):
    """409: an event with this id exists in the calendar (possibly deleted)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter; Retry-After is honoured as a floor."""

    max_attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 32.0
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ValueError("RetryPolicy needs max_attempts >= 1 and 0 <= base <= max delay")

    def delay(self, attempt: int, retry_after: float | None) -> float:
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        jittered = self.rng.uniform(ceiling / 2, ceiling)
        return max(jittered, retry_after or 0.0)


@dataclass(frozen=True)
class _Retryable:
    """A failure worth another attempt."""

    description: str
    retry_after: float | None = None


class GoogleConnector(Connector):
    """A Google account's calendars through Calendar API v3."""

    provider = "google"

    def __init__(
        self,
        credentials: Credentials | Mapping[str, Any],
        *,
        api_endpoint: str | None = None,
        token_uri: str | None = None,
        send_updates: str = "none",
        create_meet: bool = False,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        full_sync_lookback: timedelta = timedelta(days=1),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        budget: RequestBudget | None = None,
    ) -> None:
        if send_updates not in _SEND_UPDATES:
            raise ValueError(f"send_updates must be one of {sorted(_SEND_UPDATES)}")
        self._credentials = _credentials(credentials, token_uri)
        self._send_updates = send_updates
        self._create_meet = create_meet
        self._retry = retry or RetryPolicy()
        self._lookback = full_sync_lookback
        self._clock = clock
        self._budget = budget or _account_budget(self._credentials)
        self._http = google_auth_httplib2.AuthorizedHttp(
            self._credentials, http=httplib2.Http(timeout=timeout)
        )
        self._service = build(
            "calendar",
            "v3",
            http=self._http,
            static_discovery=True,
            cache_discovery=False,
            client_options={"api_endpoint": api_endpoint} if api_endpoint else None,
        )

    @property
    def budget(self) -> RequestBudget:
        """The request budget this connector draws from (shared per account by default)."""
        return self._budget

    @property
    def credentials(self) -> Credentials:
        """The live credentials (refreshed in place); persist them again after a refresh."""
        return self._credentials

    def close(self) -> None:
        self._http.close()

    # -- reads -----------------------------------------------------------------------------

    def list_calendars(self) -> list[CalendarInfo]:
        calendar_list = self._service.calendarList()
        result: list[CalendarInfo] = []
        page_token: str | None = None
        while True:
            page = self._execute(
                partial(calendar_list.list, pageToken=page_token), "calendarList.list"
            )
            result.extend(_calendar_info(item) for item in page.get("items", []))
            page_token = page.get("nextPageToken")
            if not page_token:
                return result

    def calendar_timezone(self, calendar: str) -> str | None:
        resource = self._execute(
            lambda: self._service.calendars().get(calendarId=calendar), "calendars.get"
        )
        zone = resource.get("timeZone")
        return str(zone) if zone else None

    def pull(self, calendar: str, state: str | None) -> Changes:
        params: JsonDict = {
            "calendarId": calendar,
            "singleEvents": True,
            "showDeleted": True,
            "maxResults": EVENTS_PAGE_SIZE,
        }
        if state:
            params["syncToken"] = state
        else:
            params["timeMin"] = _rfc3339(self._clock() - self._lookback)
        upserts: list[RemoteObject] = []
        deleted: list[str] = []
        for page in self._event_pages(params):
            for event in page.get("items", []):
                _sort_event(event, upserts, deleted)
            if "nextSyncToken" in page:
                log.debug(
                    "pulled %s: %d upserts, %d deletions", calendar, len(upserts), len(deleted)
                )
                return Changes(
                    upserts=upserts,
                    deleted=deleted,
                    state=str(page["nextSyncToken"]),
                    full=not state,
                    calendar_timezone=page.get("timeZone"),
                )
        raise ProtocolError(f"events.list of {calendar} ended without nextSyncToken")

    def _event_pages(self, params: JsonDict) -> Iterator[JsonDict]:
        events = self._service.events()
        page_token: str | None = None
        while True:
            page = self._execute(
                partial(events.list, **params, pageToken=page_token), "events.list"
            )
            yield page
            page_token = page.get("nextPageToken")
            if not page_token:
                return

    def busy(self, calendars: Sequence[str], start: datetime, end: datetime) -> list[BusyPeriod]:
        _require_aware(start, "start")
        _require_aware(end, "end")
        periods: list[BusyPeriod] = []
        for chunk_start, chunk_end in _time_chunks(start, end, FREEBUSY_MAX_RANGE):
            for batch in _batches(calendars, FREEBUSY_MAX_CALENDARS):
                periods.extend(self._freebusy(batch, chunk_start, chunk_end))
        return _merge(periods)

    def _freebusy(
        self, calendars: Sequence[str], start: datetime, end: datetime
    ) -> list[BusyPeriod]:
        body = {
            "timeMin": _rfc3339(start),
            "timeMax": _rfc3339(end),
            "items": [{"id": calendar_id} for calendar_id in calendars],
        }
        response = self._execute(
            lambda: self._service.freebusy().query(body=body), "freeBusy.query"
        )
        found = response.get("calendars", {})
        periods: list[BusyPeriod] = []
        for calendar_id in calendars:
            entry = found.get(calendar_id)
            if entry is None:
                raise ProtocolError(f"freeBusy.query answered nothing for calendar {calendar_id}")
            _raise_calendar_errors(calendar_id, entry.get("errors", []))
            periods.extend(_busy_period(item, start, end) for item in entry.get("busy", []))
        return periods

    # -- writes ----------------------------------------------------------------------------

    def put_event(self, calendar: str, event: EventSpec, ref: EventRef | None = None) -> EventRef:
        if not _EVENT_ID.match(event.event_key):
            raise ValueError(f"event_key {event.event_key!r} is not a valid Google event id")
        if ref is not None:
            try:
                return self._patch(calendar, ref.ref, event, if_match=ref.etag)
            except NotFound:
                log.warning("event %s vanished from %s; creating it again", ref.ref, calendar)
        return self._insert(calendar, event)

    def _insert(self, calendar: str, event: EventSpec) -> EventRef:
        body = {"id": event.event_key, **_event_body(event)}
        if self._create_meet:
            body["conferenceData"] = _meet_request(event.event_key)
        try:
            created = self._execute(
                lambda: self._service.events().insert(
                    calendarId=calendar,
                    body=body,
                    sendUpdates=self._send_updates,
                    conferenceDataVersion=1 if self._create_meet else 0,
                ),
                "events.insert",
            )
        except AlreadyExists:
            # A retry after a crash: the event is there, so bring it to the desired state.
            log.info("event %s already in %s; updating it instead", event.event_key, calendar)
            return self._patch(calendar, event.event_key, event)
        return _event_ref(created)

    def _patch(
        self, calendar: str, event_id: str, event: EventSpec, if_match: str | None = None
    ) -> EventRef:
        body = _event_body(event)

        def make_request() -> Any:
            request = self._service.events().patch(
                calendarId=calendar, eventId=event_id, body=body, sendUpdates=self._send_updates
            )
            if if_match:
                request.headers["If-Match"] = if_match
            return request

        return _event_ref(self._execute(make_request, "events.patch"))

    def delete_event(self, calendar: str, ref: EventRef) -> None:
        try:
            self._execute(
                lambda: self._service.events().delete(
                    calendarId=calendar, eventId=ref.ref, sendUpdates=self._send_updates
                ),
                "events.delete",
            )
        except NotFound:
            log.info("event %s in %s was already gone", ref.ref, calendar)

    # -- push notifications ----------------------------------------------------------------

    def watch(
        self,
        calendar_id: str,
        address: str,
        token: str,
        ttl_seconds: int,
        *,
        channel_id: str | None = None,
    ) -> WatchChannel:
        """Open a channel notifying `address` of changes to the calendar's events."""
        chosen_id = channel_id or uuid.uuid4().hex
        body = {
            "id": chosen_id,
            "type": "web_hook",
            "address": address,
            "token": token,
            "params": {"ttl": str(ttl_seconds)},
        }
        answer = self._execute(
            lambda: self._service.events().watch(calendarId=calendar_id, body=body),
            "events.watch",
        )
        return _watch_channel(answer, chosen_id, self._clock() + timedelta(seconds=ttl_seconds))

    def stop_channel(self, channel_id: str, resource_id: str) -> None:
        """Close a channel; one Google no longer knows (expired, stopped) counts as closed."""
        body = {"id": channel_id, "resourceId": resource_id}
        try:
            self._execute(lambda: self._service.channels().stop(body=body), "channels.stop")
        except NotFound:
            log.info("channel %s was already gone", channel_id)

    # -- error handling and retries ----------------------------------------------------------

    def _execute(self, make_request: Callable[[], Any], what: str) -> Any:
        """Run a request, retrying transient failures with backoff; map errors to the family."""
        policy = self._retry
        for attempt in range(1, policy.max_attempts + 1):
            self._budget.acquire()  # BudgetExhausted is transient: the pass stops here
            try:
                return make_request().execute(num_retries=0)
            except HttpError as exc:
                failure = _classify_http_error(exc, what)
            except RefreshError as exc:
                failure = _classify_refresh_error(exc)
            except (TransportError, OSError, httplib2.HttpLib2Error) as exc:  # timeouts included
                failure = _Retryable(f"{type(exc).__name__} talking to Google")
            if attempt == policy.max_attempts:
                break
            delay = policy.delay(attempt, failure.retry_after)
            log.warning(
                "google %s: %s; attempt %d/%d, retrying in %.2fs",
                what,
                failure.description,
                attempt,
                policy.max_attempts,
                delay,
            )
            policy.sleep(delay)
        raise TransientError(
            f"google {what}: {failure.description}, gave up after {policy.max_attempts} attempts",
            retry_after=failure.retry_after,
        )


# -- helpers: credentials and errors -----------------------------------------------------


def _credentials(
    credentials: Credentials | Mapping[str, Any], token_uri: str | None
) -> Credentials:
    if isinstance(credentials, Credentials):
        if token_uri and credentials.token_uri != token_uri:
            return cast(Credentials, credentials.with_token_uri(token_uri))
        return credentials  # the same object: tokens refreshed by one connector serve the next
    return credentials_from_authorized_user_info(credentials, token_uri)


def _account_budget(credentials: Credentials) -> RequestBudget:
    key = account_key(credentials.client_id, credentials.refresh_token)
    # Without a refresh token the account cannot be recognised: budget this connector alone.
    return shared_budget(key) if key else RequestBudget()


def _error_reason(exc: HttpError) -> str:
    details = exc.error_details
    if isinstance(details, list) and details and isinstance(details[0], dict):
        return str(details[0].get("reason", ""))
    return ""


def _retry_after(exc: HttpError) -> float | None:
    value = exc.resp.get("retry-after") if exc.resp is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def _classify_http_error(exc: HttpError, what: str) -> _Retryable:
    """A `_Retryable` for transient failures; raises the connector error for the rest."""
    status = int(exc.resp.status)
    reason = _error_reason(exc)
    label = f"HTTP {status} {reason}".rstrip()
    if status in _RETRYABLE_STATUSES or (status == 403 and reason in _RATE_LIMIT_REASONS):
        return _Retryable(label, _retry_after(exc))
    raise _permanent_error(status, reason, f"google {what}: {label}: {exc.reason}")


def _permanent_error(status: int, reason: str, message: str) -> ConnectorError:
    if status == 401:
        return AuthError(f"{message}; the mentor must reconnect the Google calendar")
    if status == 403 and reason == "quotaExceeded":
        # The daily quota: retrying within this pass cannot help.
        return TransientError(message)
    if status == 403:
        return AuthError(f"{message} (permission denied)")
    if status == 410 and reason == "fullSyncRequired":
        return StaleSyncState(message)
    if status in (404, 410):
        return NotFound(message)
    if status == 409:
        return AlreadyExists(message)
    if status == 412:
        return PreconditionFailed(message)
    return ProtocolError(message)


def _classify_refresh_error(exc: RefreshError) -> _Retryable:
    retryable = bool(getattr(exc, "retryable", False))
    if retryable:
        return _Retryable("token endpoint unavailable")
    raise auth_error_from_refresh(exc) from None  # the original may quote the token response


def _raise_calendar_errors(calendar_id: str, errors: Sequence[JsonDict]) -> None:
    if not errors:
        return
    reasons = ", ".join(str(error.get("reason", "unknown")) for error in errors)
    message = f"freeBusy.query cannot read calendar {calendar_id}: {reasons}"
    if any(error.get("reason") == "notFound" for error in errors):
        raise NotFound(message)
    if any(error.get("reason") in ("internalError", "backendError") for error in errors):
        raise TransientError(message)
    raise ProtocolError(message)


# -- helpers: values -----------------------------------------------------------------------


def _calendar_info(item: JsonDict) -> CalendarInfo:
    return CalendarInfo(
        remote_id=str(item["id"]),
        name=str(item.get("summaryOverride") or item.get("summary") or item["id"]),
        timezone=item.get("timeZone"),
        read_only=item.get("accessRole") not in _WRITE_ROLES,
        primary=bool(item.get("primary", False)),
    )


def _sort_event(event: JsonDict, upserts: list[RemoteObject], deleted: list[str]) -> None:
    if event.get("status") == "cancelled":
        deleted.append(str(event["id"]))
    else:
        upserts.append(RemoteObject(str(event["id"]), event.get("etag"), "google", event))


def _event_body(event: EventSpec) -> JsonDict:
    private = {**event.private, GOOGLE_PRIVATE_KEY: _booking_id(event)}
    return {
        "summary": event.summary,
        "description": event.description,
        "location": event.location,
        "start": {"dateTime": _rfc3339(event.start), "timeZone": "UTC"},
        "end": {"dateTime": _rfc3339(event.end), "timeZone": "UTC"},
        # Also undeletes: re-putting a booking whose event was deleted must make it live again.
        "status": "cancelled" if event.status.upper() == "CANCELLED" else "confirmed",
        "attendees": [
            {"email": email, "displayName": name} if name else {"email": email}
            for name, email in event.attendees
        ],
        "extendedProperties": {"private": private},
    }


def _booking_id(event: EventSpec) -> str:
    return booking_id_from_uid(event.uid) or event.event_key


def _meet_request(event_key: str) -> JsonDict:
    # The requestId makes the conference creation idempotent for this event.
    return {
        "createRequest": {"requestId": event_key, "conferenceSolutionKey": {"type": "hangoutsMeet"}}
    }


def _watch_channel(answer: JsonDict, channel_id: str, fallback: datetime) -> WatchChannel:
    if str(answer.get("id", channel_id)) != channel_id or not answer.get("resourceId"):
        # Not the whole answer: it echoes the channel token.
        raise ProtocolError(f"events.watch answered no resourceId or another id than {channel_id}")
    raw = answer.get("expiration")  # int64 milliseconds, sent as a string
    try:
        expiration = datetime.fromtimestamp(int(raw) / 1000, UTC) if raw else fallback
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"events.watch answered a bad expiration {raw!r}") from exc
    return WatchChannel(channel_id, str(answer["resourceId"]), expiration)


def _event_ref(event: JsonDict) -> EventRef:
    return EventRef(ref=str(event["id"]), etag=event.get("etag"))


def _require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got {moment!r}")


def _rfc3339(moment: datetime) -> str:
    _require_aware(moment, "timestamp")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_rfc3339(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ProtocolError(f"Google sent a timestamp without offset: {value!r}")
    return parsed.astimezone(UTC)


def _busy_period(item: JsonDict, start: datetime, end: datetime) -> BusyPeriod:
    try:
        busy_start, busy_end = _parse_rfc3339(item["start"]), _parse_rfc3339(item["end"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"malformed freeBusy period {item!r}") from exc
    return BusyPeriod(max(busy_start, start.astimezone(UTC)), min(busy_end, end.astimezone(UTC)))


def _time_chunks(
    start: datetime, end: datetime, longest: timedelta
) -> Iterator[tuple[datetime, datetime]]:
    cursor = start
    while cursor < end:
        chunk_end = min(cursor + longest, end)
        yield cursor, chunk_end
        cursor = chunk_end


def _batches(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for offset in range(0, len(items), size):
        yield items[offset : offset + size]


def _merge(periods: list[BusyPeriod]) -> list[BusyPeriod]:
    """Sorted, with overlapping or touching periods joined (chunk borders split them)."""
    merged: list[BusyPeriod] = []
    for period in sorted(periods, key=lambda p: (p.start, p.end)):
        if period.end <= period.start:
            continue
        if merged and period.start <= merged[-1].end:
            last = merged[-1]
            merged[-1] = BusyPeriod(last.start, max(last.end, period.end))
        else:
            merged.append(period)
    return merged
