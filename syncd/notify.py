"""The systemd notify protocol (sd_notify(3)) without native dependencies.

Each message is one datagram of newline-separated KEY=VALUE lines sent to the AF_UNIX socket
named by $NOTIFY_SOCKET; a name starting with '@' is an abstract socket. Outside systemd the
variable is unset and every call is a cheap no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


def _socket_address(name: str) -> str | bytes:
    if name.startswith("@"):
        # Abstract namespace: a leading NUL byte instead of a path.
        return b"\0" + name[1:].encode()
    return name


class Notifier:
    """Sends state changes to systemd; failures are logged, never raised."""

    def __init__(self, socket_name: str | None) -> None:
        self._address = _socket_address(socket_name) if socket_name else None

    @classmethod
    def from_environment(cls, env: Mapping[str, str] = os.environ) -> Notifier:
        return cls(env.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, **fields: str) -> bool:
        """Send one message, e.g. send(READY="1", STATUS="running"). True if delivered."""
        if self._address is None or not fields:
            return False
        payload = "\n".join(f"{key}={_one_line(value)}" for key, value in fields.items())
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.settimeout(1.0)
                sock.connect(self._address)
                sock.sendall(payload.encode())
        except OSError as error:
            log.warning("could not notify systemd: %s", error)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send(READY="1", **_status(status))

    def status(self, text: str) -> bool:
        return self.send(STATUS=text)

    def reloading(self) -> bool:
        # MONOTONIC_USEC lets Type=notify-reload match this message to the reload request.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send(RELOADING="1", MONOTONIC_USEC=str(usec))

    def stopping(self, status: str | None = None) -> bool:
        return self.send(STOPPING="1", **_status(status))

    def watchdog(self) -> bool:
        return self.send(WATCHDOG="1")


def _status(status: str | None) -> dict[str, str]:
    return {"STATUS": status} if status else {}


def _one_line(value: str) -> str:
    # A newline would start a new KEY=VALUE assignment inside the message.
    return value.replace("\n", " ")


def watchdog_interval(env: Mapping[str, str] = os.environ) -> float | None:
    """Seconds between watchdog pings (half of $WATCHDOG_USEC, as sd_watchdog_enabled(3)
    advises), or None when systemd does not watch this process."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None  # the variables were meant for a parent process
    return int(usec) / 2 / 1_000_000


class WatchdogPinger:
    """A thread that sends WATCHDOG=1 every `interval` seconds while `is_healthy()` holds.
    When the daemon stops being healthy the pings stop and systemd restarts it."""

    def __init__(self, notifier: Notifier, interval: float, is_healthy: Callable[[], bool]) -> None:
        self._notifier = notifier
        self._interval = interval
        self._is_healthy = is_healthy
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="syncd-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self._is_healthy():
                self._notifier.watchdog()
            else:
                log.warning("daemon unhealthy: withholding the systemd watchdog ping")
            self._stop.wait(self._interval)
