"""Request coalescing: concurrent identical computations run once and share the answer.

Used for slots: when many students open the same service page at once, each request would
otherwise redo the same 28-day computation on the same data. A caller that arrives while an
identical computation is running waits for it instead (its answer is then at most one
computation old, tens of milliseconds); nothing is kept once it finishes, so there is no cache
to invalidate. A follower that waits too long computes on its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")
FOLLOWER_WAIT_S = 30.0


class _Call(Generic[V]):
    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: V | None = None
        self.error: BaseException | None = None


class SingleFlight(Generic[V]):
    """`run(key, compute)`: one `compute` per key at a time; concurrent callers share it."""

    def __init__(self, follower_wait_s: float = FOLLOWER_WAIT_S) -> None:
        self._lock = threading.Lock()
        self._calls: dict[Hashable, _Call[V]] = {}
        self._follower_wait_s = follower_wait_s

    def run(self, key: Hashable, compute: Callable[[], V]) -> V:
        with self._lock:
            running = self._calls.get(key)
            if running is None:
                mine: _Call[V] = _Call()
                self._calls[key] = mine
        if running is not None:
            return self._follow(running, compute)
        return self._lead(key, mine, compute)

    def _lead(self, key: Hashable, call: _Call[V], compute: Callable[[], V]) -> V:
        try:
            call.value = compute()
            return call.value
        except BaseException as error:
            call.error = error
            raise
        finally:
            with self._lock:
                del self._calls[key]
            call.done.set()

    def _follow(self, call: _Call[V], compute: Callable[[], V]) -> V:
        if not call.done.wait(self._follower_wait_s):
            return compute()
        if call.error is not None:
            raise call.error
        return call.value  # type: ignore[return-value]  # set whenever error is None
