"""A per-account request budget: a thread-safe token bucket.

Google limits Calendar API calls per user per minute (600 by default). Every connector working
for one Google account takes a token from the same bucket before each API call, so one daemon
cannot exceed that limit however many calendars of the account it syncs in parallel.

A bucket holding at most `burst` tokens and refilled at `rate_per_minute` lets through at most
``burst + rate_per_minute * T / 60`` requests in any window of T seconds. `shared_budget()`
therefore refills at the limit minus the burst, so no 60-second window exceeds the limit.

Waiting is by reservation: a caller takes its token at once (the balance may go negative) and
sleeps outside the lock until the bucket would have refilled it, so callers are served in the
order they asked and nobody holds the lock while sleeping. A wait longer than `max_wait`
raises `BudgetExhausted` (a `TransientError`) instead: the pass gives up and retries later.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

from connectors.base import TransientError

GOOGLE_PER_USER_LIMIT = 600  # Calendar API requests per minute per user (Google's default)
DEFAULT_BURST = 60  # up to 6 s of requests at once: a full pull of a few calendars
DEFAULT_MAX_WAIT = 60.0  # seconds; beyond this the pass is better retried later


class BudgetExhausted(TransientError):
    """Waiting for the budget would take longer than allowed; try again later."""


class RequestBudget:
    """A token bucket: `acquire()` before every request."""

    def __init__(
        self,
        rate_per_minute: float = GOOGLE_PER_USER_LIMIT,
        burst: int = DEFAULT_BURST,
        *,
        max_wait: float = DEFAULT_MAX_WAIT,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_per_minute <= 0 or burst < 1 or max_wait < 0:
            raise ValueError("RequestBudget needs rate_per_minute > 0, burst >= 1, max_wait >= 0")
        self.rate_per_minute = float(rate_per_minute)
        self.burst = burst
        self._per_second = self.rate_per_minute / 60.0
        self._max_wait = max_wait
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = float(burst)  # a fresh budget starts full
        self._refilled_at = clock()
        self.acquired = 0  # tokens handed out: tests and benchmarks read it
        self.waited = 0.0  # total seconds callers were told to wait

    def acquire(self) -> float:
        """Take one token, sleeping until it is available; returns the seconds waited."""
        with self._lock:
            wait = self._reserve()
        if wait > 0:
            self._sleep(wait)
        return wait

    def _reserve(self) -> float:
        self._refill()
        wait = max(0.0, (1.0 - self._tokens) / self._per_second)
        if wait > self._max_wait:
            raise BudgetExhausted(
                f"request budget of {self.rate_per_minute:g}/min exhausted; "
                f"next request possible in {wait:.1f}s",
                retry_after=wait,
            )
        self._tokens -= 1.0
        self.acquired += 1
        self.waited += wait
        return wait

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._refilled_at)  # tolerate a clock that steps back
        self._tokens = min(float(self.burst), self._tokens + elapsed * self._per_second)
        self._refilled_at = now


_shared: dict[str, RequestBudget] = {}
_shared_lock = threading.Lock()


def account_key(client_id: str | None, refresh_token: str | None) -> str | None:
    """A stable key for one Google account grant; a hash, so no secret is kept as a key."""
    if not refresh_token:
        return None
    material = f"{client_id or ''}\0{refresh_token}".encode()
    return hashlib.sha256(material).hexdigest()


def shared_budget(key: str, limit_per_minute: int = GOOGLE_PER_USER_LIMIT) -> RequestBudget:
    """The process-wide budget of one account, created on first use.

    Refills at `limit_per_minute - DEFAULT_BURST` so burst plus refill stay within the limit
    in any 60-second window.
    """
    with _shared_lock:
        budget = _shared.get(key)
        if budget is None:
            burst = min(DEFAULT_BURST, max(1, limit_per_minute // 2))
            budget = RequestBudget(limit_per_minute - burst, burst)
            _shared[key] = budget
        return budget
