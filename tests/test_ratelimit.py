"""The per-account request budget: arithmetic with a fake clock, and its use by GoogleConnector."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from connectors.base import TransientError
from connectors.google import GoogleConnector, RetryPolicy
from connectors.ratelimit import (
    BudgetExhausted,
    RequestBudget,
    account_key,
    shared_budget,
)
from tests.fake_google import FakeGoogle

CAL = "mentor@example.com"
CLIENT_ID = "client-1"
CLIENT_SECRET = "s3cret-client-value"


class FakeTime:
    """A clock and a sleep; sleeping advances the clock only when `advance_on_sleep`."""

    def __init__(self, *, advance_on_sleep: bool = False) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.advance_on_sleep = advance_on_sleep
        self._lock = threading.Lock()

    def clock(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            if self.advance_on_sleep:
                self.now += seconds

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def budget(fake: FakeTime, rate: float, burst: int, max_wait: float = 1e9) -> RequestBudget:
    return RequestBudget(rate, burst, max_wait=max_wait, clock=fake.clock, sleep=fake.sleep)


# -- the bucket --------------------------------------------------------------------------


def test_a_fresh_budget_lets_the_burst_through_then_queues() -> None:
    fake = FakeTime()
    bucket = budget(fake, rate=60, burst=3)  # one token per second
    waits = [bucket.acquire() for _ in range(5)]
    # Three tokens at once; the 4th waits for one refill, the 5th (queued behind it) for two.
    assert waits == [0.0, 0.0, 0.0, pytest.approx(1.0), pytest.approx(2.0)]
    assert fake.sleeps == [pytest.approx(1.0), pytest.approx(2.0)]
    assert bucket.acquired == 5
    assert bucket.waited == pytest.approx(3.0)


def test_refill_is_proportional_to_elapsed_time_and_capped_at_the_burst() -> None:
    fake = FakeTime()
    bucket = budget(fake, rate=120, burst=2)  # two tokens per second
    assert [bucket.acquire(), bucket.acquire()] == [0.0, 0.0]
    fake.advance(0.25)  # half a token back: the next one waits the other 0.25 s
    assert bucket.acquire() == pytest.approx(0.25)
    fake.advance(10.0)  # 20 tokens' worth of time, but the bucket holds only 2
    assert [bucket.acquire(), bucket.acquire()] == [0.0, 0.0]
    assert bucket.acquire() == pytest.approx(0.5)


def test_paced_callers_are_spaced_by_the_rate() -> None:
    fake = FakeTime(advance_on_sleep=True)
    bucket = budget(fake, rate=60, burst=1)
    start = fake.now
    for _ in range(10):
        bucket.acquire()
    # The first is free, each of the other nine waits exactly one second.
    assert fake.sleeps == [pytest.approx(1.0)] * 9
    assert fake.now - start == pytest.approx(9.0)


def test_a_wait_beyond_max_wait_is_refused_without_taking_a_token() -> None:
    fake = FakeTime()
    bucket = budget(fake, rate=60, burst=1, max_wait=1.5)
    assert bucket.acquire() == 0.0
    assert bucket.acquire() == pytest.approx(1.0)  # balance now -1
    with pytest.raises(BudgetExhausted) as refused:
        bucket.acquire()  # would wait 2 s
    assert refused.value.retry_after == pytest.approx(2.0)
    assert isinstance(refused.value, TransientError)
    assert bucket.acquired == 2
    fake.advance(2.0)  # the refused call took nothing: two seconds bring the balance to +1
    assert bucket.acquire() == 0.0


def test_no_minute_exceeds_the_limit_of_a_shared_budget() -> None:
    fake = FakeTime(advance_on_sleep=True)
    bucket = shared_budget("test-window-" + str(id(fake)))
    # Swap in the fake clock on an equivalent bucket (shared_budget uses the real one).
    bucket = budget(fake, rate=bucket.rate_per_minute, burst=bucket.burst)
    assert (bucket.rate_per_minute, bucket.burst) == (540.0, 60)
    stamps = []
    for _ in range(2000):  # about 3.5 minutes of requests as fast as allowed
        bucket.acquire()
        stamps.append(fake.now)
    # Half-open windows [t, t + 60 s); the epsilon keeps float drift from counting the
    # request due exactly 60 s later.
    busiest = max(bisect.bisect_left(stamps, t + 60.0 - 1e-6) - i for i, t in enumerate(stamps))
    # 60 at once, then 9 per second (one every 1/9 s): 60 + 539 fit in the first window.
    assert busiest == 599


def test_concurrent_callers_each_get_their_own_place_in_the_queue() -> None:
    fake = FakeTime()  # the clock stands still: nothing refills
    bucket = budget(fake, rate=60, burst=10)
    waits: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(50):
            waited = bucket.acquire()
            with lock:
                waits.append(waited)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert bucket.acquired == 400
    # Lost updates would repeat or skip a place: 10 free tokens, then waits 1, 2, ..., 390 s.
    assert sorted(round(w) for w in waits) == [0] * 10 + list(range(1, 391))


def test_invalid_settings_are_refused() -> None:
    for rate, burst, max_wait in ((0, 1, 1.0), (60, 0, 1.0), (60, 1, -1.0)):
        with pytest.raises(ValueError):
            RequestBudget(rate, burst, max_wait=max_wait)


def test_account_key_identifies_a_grant_without_holding_the_secret() -> None:
    key = account_key("client-1", "1//refresh-abc")
    assert key == account_key("client-1", "1//refresh-abc")
    assert key != account_key("client-1", "1//refresh-xyz")
    assert key != account_key("client-2", "1//refresh-abc")
    assert key is not None and "refresh-abc" not in key
    assert account_key("client-1", None) is None


def test_shared_budget_is_one_object_per_key() -> None:
    assert shared_budget("key-a") is shared_budget("key-a")
    assert shared_budget("key-a") is not shared_budget("key-b")


# -- GoogleConnector consults the budget ---------------------------------------------------


@pytest.fixture
def google() -> Iterator[FakeGoogle]:
    with FakeGoogle() as fake:
        fake.register_client(CLIENT_ID, CLIENT_SECRET)
        fake.add_calendar(CAL, time_zone="UTC", primary=True)
        yield fake


def make_connector(
    google: FakeGoogle, refresh_token: str, request_budget: RequestBudget | None = None
) -> GoogleConnector:
    info = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "refresh_token": refresh_token}
    return GoogleConnector(
        info,
        api_endpoint=google.api_endpoint,
        token_uri=google.token_uri,
        timeout=5,
        retry=RetryPolicy(max_attempts=3, base_delay=0.001, sleep=lambda _: None),
        clock=lambda: datetime(2030, 1, 1, tzinfo=UTC),
        budget=request_budget,
    )


def api_requests(google: FakeGoogle) -> int:
    return sum(1 for r in google.requests if r.path.startswith("/calendar/v3/"))


def test_every_api_request_and_retry_takes_a_token(google: FakeGoogle) -> None:
    fake = FakeTime()
    bucket = budget(fake, rate=60, burst=2)
    connector = make_connector(google, google.issue_refresh_token(CLIENT_ID), bucket)
    try:
        connector.list_calendars()
        google.fail_next(503)  # one retry: a second request, a second token
        connector.pull(CAL, None)
        connector.calendar_timezone(CAL)
    finally:
        connector.close()
    assert api_requests(google) == 4
    assert bucket.acquired == 4  # the token endpoint is not the Calendar API: not counted
    assert fake.sleeps == [pytest.approx(1.0), pytest.approx(2.0)]  # 3rd and 4th queued


def test_an_exhausted_budget_stops_before_sending(google: FakeGoogle) -> None:
    fake = FakeTime()
    bucket = budget(fake, rate=60, burst=1, max_wait=0.0)
    connector = make_connector(google, google.issue_refresh_token(CLIENT_ID), bucket)
    try:
        connector.list_calendars()
        with pytest.raises(BudgetExhausted):
            connector.pull(CAL, None)
    finally:
        connector.close()
    assert api_requests(google) == 1


def test_connectors_of_one_account_share_a_budget_by_default(google: FakeGoogle) -> None:
    token, other_token = google.issue_refresh_token(CLIENT_ID), google.issue_refresh_token()
    connectors = [
        make_connector(google, token),
        make_connector(google, token),
        make_connector(google, other_token),
    ]
    try:
        first, second, other = (c.budget for c in connectors)
        assert first is second
        assert first is not other
        connectors[0].list_calendars()
        connectors[1].list_calendars()
        assert first.acquired == 2 and other.acquired == 0
    finally:
        for connector in connectors:
            connector.close()
