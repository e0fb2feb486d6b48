"""Local ports for the demo's servers, and bounded waits until they answer."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from syncd.demo.common import HOST, STARTUP_SECONDS, DemoError

PREFERRED_DAEMON_PORT = 8470


def port_is_free(port: int) -> bool:
    """Nobody listens on it (connections of an earlier run in TIME_WAIT don't count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def stable_port(saved: Path) -> int:
    """The port used last time if it is still free (the calendars' URLs stay valid)."""
    with contextlib.suppress(OSError, ValueError):
        port = int(saved.read_text(encoding="utf-8"))
        if port_is_free(port):
            return port
    port = free_port()
    saved.write_text(f"{port}\n", encoding="utf-8")
    return port


def daemon_port() -> int:
    return PREFERRED_DAEMON_PORT if port_is_free(PREFERRED_DAEMON_PORT) else free_port()


def wait_until(ready: Callable[[], bool], what: str, timeout: float = STARTUP_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise DemoError(f"{what} did not answer within {timeout:.0f} s")
        time.sleep(0.1)


def answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=1.0)
    except httpx.TransportError:
        return False
    return True
