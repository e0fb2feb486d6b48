"""Who may do which work: owner ids for leases, and the SQLite single-daemon lock.

The SQL that claims and releases leased rows lives in `syncd.store.leases`; this module holds
what the daemon needs around it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import socket
from pathlib import Path
from types import TracebackType

from sqlalchemy.engine import make_url

from syncd.errors import UserError
from syncd.store import leases as store_leases
from syncd.store.db import Database

log = logging.getLogger(__name__)


class AlreadyRunning(UserError):
    """Another daemon already serves this SQLite database."""


def make_owner_id() -> str:
    """hostname:pid:random — unique per process start, readable in the lease columns."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def sqlite_lock_path(database_url: str) -> Path | None:
    """`<db file>.lock` for a file-backed SQLite URL; None for PostgreSQL or in-memory."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(f"{url.database}.lock")


class SingleInstanceLock:
    """An exclusive `flock` held for the daemon's life. The kernel drops it when the process
    dies, even on kill -9, so a stale lock file never blocks a restart."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise AlreadyRunning(
                f"another syncd daemon{holder} already uses this SQLite database "
                f"(lock {self.path} is held). SQLite supports a single daemon; stop the other "
                "one, or use PostgreSQL to run several replicas."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> SingleInstanceLock:
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""


def lock_single_instance(database_url: str) -> SingleInstanceLock | None:
    """Take the single-daemon lock when the database is a SQLite file; None otherwise."""
    path = sqlite_lock_path(database_url)
    if path is None:
        return None
    lock = SingleInstanceLock(path)
    lock.acquire()
    return lock


def release_all_leases(db: Database, owner: str) -> int:
    """Hand back everything `owner` holds so other replicas can take it at once."""
    with db.write_session() as session:
        released = store_leases.release_all(session, owner)
    if released:
        log.info("released %d lease(s) held by %s", released, owner)
    return released
