"""sd_notify against real AF_UNIX datagram sockets."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncd.notify import Notifier, WatchdogPinger, watchdog_interval


@pytest.fixture
def listener() -> Iterator[tuple[str, socket.socket]]:
    """A datagram socket on a short path (AF_UNIX paths are limited to ~108 bytes)."""
    directory = tempfile.mkdtemp(prefix="sdn-", dir="/tmp")
    path = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2.0)
    try:
        yield path, sock
    finally:
        sock.close()
        Path(path).unlink(missing_ok=True)
        os.rmdir(directory)


def _receive(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.split("\n"))


def test_ready_and_status_reach_the_socket(listener: tuple[str, socket.socket]) -> None:
    path, sock = listener
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": path})

    assert notifier.ready("running 3 jobs")
    assert _receive(sock) == {"READY": "1", "STATUS": "running 3 jobs"}
    assert notifier.status("line one\nline two")
    assert _receive(sock) == {"STATUS": "line one line two"}
    assert notifier.stopping()
    assert _receive(sock) == {"STOPPING": "1"}
    assert notifier.watchdog()
    assert _receive(sock) == {"WATCHDOG": "1"}


def test_reloading_carries_a_monotonic_timestamp(listener: tuple[str, socket.socket]) -> None:
    path, sock = listener
    assert Notifier(path).reloading()
    message = _receive(sock)
    assert message["RELOADING"] == "1"
    assert int(message["MONOTONIC_USEC"]) > 0


def test_abstract_socket_names_start_with_at() -> None:
    name = f"syncd-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(2.0)
        assert Notifier(f"@{name}").ready()
        assert _receive(sock) == {"READY": "1"}


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert not notifier.ready()


def test_a_missing_socket_is_reported_not_raised(tmp_path: Path) -> None:
    assert not Notifier(str(tmp_path / "gone")).ready()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "junk"}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
    ],
)
def test_watchdog_interval_is_half_the_timeout(env: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(env) == expected


def test_watchdog_pings_only_while_healthy(listener: tuple[str, socket.socket]) -> None:
    path, sock = listener
    healthy = threading.Event()
    healthy.set()
    pinger = WatchdogPinger(Notifier(path), 0.02, healthy.is_set)
    pinger.start()
    try:
        assert _receive(sock) == {"WATCHDOG": "1"}
        healthy.clear()
        time.sleep(0.06)  # let an iteration that already saw "healthy" finish
        _drain(sock)
        with pytest.raises(TimeoutError):
            sock.recv(4096)
        healthy.set()
        sock.settimeout(2.0)
        assert _receive(sock) == {"WATCHDOG": "1"}
    finally:
        pinger.stop()


def _drain(sock: socket.socket) -> None:
    sock.setblocking(False)
    try:
        while True:
            sock.recv(4096)
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(0.1)
