"""The daemon: jobs, wake-ups, shutdown, and `syncd run` as a real process (signals, HTTP,
sd_notify, the SQLite single-instance lock)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from syncd.config import Config, load_config
from syncd.daemon import (
    Daemon,
    DaemonSettings,
    Job,
    JobContext,
    config_changes,
    default_jobs,
    ensure_schema,
)
from syncd.errors import ConfigError, UserError
from syncd.store.db import Database
from syncd.store.models import Booking, BusyInterval, Calendar, Mentor, OutboxItem, Service, Student

NOW = datetime.now(UTC)
TEST_SECRET_KEY = "daemon-tests-" + "k" * 40
SYNCD = [sys.executable, "-c", "from syncd.cli import main; main()"]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'daemon.db'}"


@pytest.fixture
def db(sqlite_url: str) -> Iterator[Database]:
    database = Database(sqlite_url)
    database.upgrade()
    yield database
    database.dispose()


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _config(tmp_path: Path, text: str, name: str = "syncd.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _counting_job(name: str, counts: dict[str, int], *, fail: bool = False) -> Job:
    def run(ctx: JobContext) -> int:
        counts[name] = counts.get(name, 0) + 1
        if fail:
            raise RuntimeError(f"{name} exploded")
        return 1

    return Job(name, timedelta(hours=1), run)


# -- settings and the job registry -----------------------------------------------------------


def test_settings_defaults_and_overrides(tmp_path: Path) -> None:
    assert DaemonSettings.from_config(Config()).listen == "127.0.0.1:8470"
    path = _config(tmp_path, "[daemon]\nworkers = 2\nshutdown_timeout_seconds = 3\n")
    settings = DaemonSettings.from_config(load_config(path))
    assert (settings.workers, settings.shutdown_timeout_seconds) == (2, 3.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[daemon]\nworkerz = 2\n", r"unknown option \[daemon\] workerz"),
        ('[daemon]\nworkers = "4"\n', r"\[daemon\] workers must be a int"),
        ("[daemon]\nworkers = 0\n", r"\[daemon\] workers must be positive"),
        ("[daemon]\nupgrade_schema = 1\n", r"\[daemon\] upgrade_schema must be a bool"),
        ('[http]\nlisten = "nowhere"\n', r"\[http\] listen"),
    ],
)
def test_bad_settings_name_the_file_and_option(tmp_path: Path, text: str, message: str) -> None:
    path = _config(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as error:
        DaemonSettings.from_config(load_config(path))
    assert str(path) in str(error.value)


def test_default_jobs_take_their_intervals_from_the_config(tmp_path: Path) -> None:
    path = tmp_path / "syncd.toml"
    path.write_text("[daemon]\nsync_check_seconds = 7\noutbox_interval_seconds = 2\n")
    jobs = {job.name: job for job in default_jobs(load_config(path))}
    assert set(jobs) == {
        "sync_calendars",
        "drain_outbox",
        "complete_past_bookings",
        "prune_busy_cache",
        "measure_outbox",
    }
    assert jobs["sync_calendars"].interval == timedelta(seconds=7)
    assert jobs["drain_outbox"].interval == timedelta(seconds=2)


def test_config_changes_name_keys_but_not_values() -> None:
    old = Config(sections={"smtp": {"password_file": "/a"}, "daemon": {"workers": 2}})
    new = Config(sections={"smtp": {"password_file": "/b"}, "http": {"listen": "127.0.0.1:1"}})
    assert config_changes(old, new) == [
        "[daemon] workers",
        "[http] listen",
        "[smtp] password_file",
    ]


# -- running jobs in-process ------------------------------------------------------------------


def test_a_failing_job_does_not_stop_the_others(db: Database) -> None:
    counts: dict[str, int] = {}
    jobs = [
        _counting_job("first", counts),
        _counting_job("broken", counts, fail=True),
        _counting_job("last", counts),
    ]
    daemon = Daemon(db, Config(), jobs, owner="test")

    assert daemon.run_once() == ["broken"]
    assert counts == {"first": 1, "broken": 1, "last": 1}
    metrics = daemon.ctx.metrics.render().decode()
    assert 'syncd_job_failures_total{job="broken"} 1.0' in metrics
    assert 'syncd_job_runs_total{job="last"} 1.0' in metrics
    daemon.ctx.network.shutdown()


def test_scheduled_jobs_survive_failures_and_wake_runs_a_job_now(db: Database) -> None:
    counts: dict[str, int] = {}
    jobs = [_counting_job("drain", counts), _counting_job("broken", counts, fail=True)]
    daemon = Daemon(db, Config(), jobs, owner="test")
    daemon.start(serve_http=False)
    try:
        assert _wait_for(lambda: counts.get("drain") == 1 and counts.get("broken") == 1)
        assert daemon.healthy()
        daemon.wake("drain")  # the interval is an hour: only the wake-up can run it again
        daemon.wake("broken")
        assert _wait_for(lambda: counts.get("drain") == 2 and counts.get("broken") == 2)
    finally:
        assert daemon.shutdown()
    assert not daemon.healthy()


def test_shutdown_waits_for_in_flight_jobs_then_releases_leases(db: Database) -> None:
    started, release = threading.Event(), threading.Event()

    def slow(ctx: JobContext) -> int:
        started.set()
        release.wait(5)
        return 1

    with db.write_session() as session:
        session.add(OutboxItem(kind="invite", payload={}, lease_owner="me", lease_expires=NOW))
    config = Config(sections={"daemon": {"shutdown_timeout_seconds": 0.3}})
    daemon = Daemon(db, config, [Job("slow", timedelta(hours=1), slow)], owner="me")
    daemon.start(serve_http=False)
    assert started.wait(5)

    began = time.monotonic()
    finished = daemon.shutdown()
    release.set()

    assert not finished  # the job outlived the deadline ...
    assert time.monotonic() - began < 3  # ... and shutdown did not wait for it
    with db.session() as session:
        assert session.query(OutboxItem).one().lease_owner is None


def test_the_schema_must_be_current_unless_upgrades_are_allowed(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    try:
        refuse = DaemonSettings.from_config(Config(sections={"daemon": {"upgrade_schema": False}}))
        with pytest.raises(UserError, match="syncd db upgrade"):
            ensure_schema(db, refuse)
        ensure_schema(db, DaemonSettings())
        assert not db.needs_upgrade()
    finally:
        db.dispose()


# -- `syncd run --once` -----------------------------------------------------------------------


def _seed_past_booking_and_busy_rows(db: Database) -> None:
    past = NOW - timedelta(days=2)
    with db.write_session() as session:
        session.add(Mentor(id="m1", name="Ada", email="ada@example.org", timezone="UTC"))
        session.add(Student(id="s1", name="Bo", email="bo@example.org", timezone="UTC"))
        session.add(Service(slug="intro", name="Intro", duration_min=30))
        session.flush()
        calendar = Calendar(mentor_id="m1", provider="caldav", remote_id="work")
        session.add(calendar)
        session.flush()
        session.add(
            Booking(
                id="b1", service_slug="intro", mentor_id="m1", student_id="s1",
                start=past, end=past + timedelta(minutes=30),
                block_start=past, block_end=past + timedelta(minutes=30),
            )
        )  # fmt: skip
        for start in (NOW - timedelta(days=3), NOW + timedelta(days=1)):
            session.add(
                BusyInterval(calendar_id=calendar.id, start=start, end=start + timedelta(hours=1))
            )


def test_run_once_runs_the_jobs_and_exits_zero(db: Database, sqlite_url: str) -> None:
    _seed_past_booking_and_busy_rows(db)

    result = subprocess.run(
        [*SYNCD, "--database", sqlite_url, "run", "--once"],
        capture_output=True, text=True, timeout=60, env=_env(),
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    with db.session() as session:
        assert session.get(Booking, "b1").status == "completed"  # type: ignore[union-attr]
        remaining = [row.start for row in session.query(BusyInterval)]
    assert len(remaining) == 1 and remaining[0] > NOW


# -- `syncd run` as a real process ------------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    env["SYNCD_SECRET_KEY"] = TEST_SECRET_KEY  # the calendar sync job needs one
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    log: Path
    base_url: str

    def messages(self) -> list[dict[str, object]]:
        lines = self.log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def logged(self, fragment: str) -> bool:
        return any(fragment in str(m.get("message")) for m in self.messages())

    def owner(self) -> str:
        for message in self.messages():
            text = str(message.get("message"))
            if text.startswith("syncd running as "):
                return text.split()[3]
        raise AssertionError("daemon did not log its owner id")


@pytest.fixture
def notify_socket() -> Iterator[tuple[str, socket.socket]]:
    directory = tempfile.mkdtemp(prefix="sdn-", dir="/tmp")
    path = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    yield path, sock
    sock.close()
    os.unlink(path)
    os.rmdir(directory)


@pytest.fixture
def start_daemon(tmp_path: Path, sqlite_url: str, db: Database) -> Iterator[Callable[..., Running]]:
    processes: list[subprocess.Popen[bytes]] = []

    def start(config: Path | None = None, **env: str) -> Running:
        port = _free_port()
        config = config or _config(tmp_path, f'[http]\nlisten = "127.0.0.1:{port}"\n')
        listen = load_config(config).get("http", "listen")
        log = tmp_path / f"daemon-{len(processes)}.log"
        with log.open("wb") as stderr:
            process = subprocess.Popen(
                [*SYNCD, "--config", str(config), "--database", sqlite_url, "run"],
                stderr=stderr, stdout=subprocess.DEVNULL, env=_env(**env),
            )  # fmt: skip
        processes.append(process)
        running = Running(process, log, f"http://{listen}")
        assert _wait_for(lambda: _answers(running.base_url) or process.poll() is not None, 20)
        assert process.poll() is None, log.read_text()
        return running

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def _answers(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _stop(running: Running) -> tuple[int, float]:
    began = time.monotonic()
    running.process.send_signal(signal.SIGTERM)
    code = running.process.wait(15)
    return code, time.monotonic() - began


def test_sigterm_stops_within_ten_seconds_and_releases_leases(
    start_daemon: Callable[..., Running],
    db: Database,
    notify_socket: tuple[str, socket.socket],
) -> None:
    path, sock = notify_socket
    running = start_daemon(NOTIFY_SOCKET=path)
    assert b"READY=1" in sock.recv(4096)
    owner = running.owner()
    with db.write_session() as session:
        session.add(Mentor(id="m1", name="Ada", email="ada@example.org", timezone="UTC"))
        session.flush()
        lease = {"lease_owner": owner, "lease_expires": NOW + timedelta(hours=1)}
        session.add(Calendar(mentor_id="m1", provider="caldav", remote_id="work", **lease))
        session.add(OutboxItem(kind="invite", payload={}, **lease))
    ready = httpx.get(f"{running.base_url}/readyz", timeout=5)
    metrics = httpx.get(f"{running.base_url}/metrics", timeout=5)

    code, seconds = _stop(running)

    assert ready.status_code == 200
    assert "syncd_job_runs_total" in metrics.text
    assert code == 0 and seconds < 10, running.log.read_text()
    assert b"STOPPING=1" in sock.recv(4096)
    with db.session() as session:
        assert session.query(Calendar).one().lease_owner is None
        assert session.query(OutboxItem).one().lease_owner is None


def test_sighup_reloads_the_config_and_keeps_the_old_one_if_invalid(
    start_daemon: Callable[..., Running], tmp_path: Path
) -> None:
    port = _free_port()
    config = _config(tmp_path, f'[http]\nlisten = "127.0.0.1:{port}"\n', "reload.toml")
    running = start_daemon(config)

    config.write_text(
        f'[http]\nlisten = "127.0.0.1:{port}"\n'
        "[daemon]\nhousekeeping_interval_seconds = 30\n"
        '[invites]\norganizer = "mentoring@example.org"\n'
    )
    running.process.send_signal(signal.SIGHUP)
    assert _wait_for(lambda: running.logged("config reloaded:"))
    assert running.logged("[daemon] housekeeping_interval_seconds, [invites] organizer")
    assert _wait_for(lambda: running.logged("job complete_past_bookings now runs every 0:00:30"))

    config.write_text("[daemon\nbroken")
    running.process.send_signal(signal.SIGHUP)
    assert _wait_for(lambda: running.logged("config reload failed"))
    assert _answers(running.base_url)

    code, _ = _stop(running)
    assert code == 0


def test_a_second_daemon_on_the_same_sqlite_file_refuses_to_start(
    start_daemon: Callable[..., Running], sqlite_url: str
) -> None:
    running = start_daemon()

    second = subprocess.run(
        [*SYNCD, "--database", sqlite_url, "run", "--once"],
        capture_output=True, text=True, timeout=60, env=_env(),
    )  # fmt: skip

    assert second.returncode == 1
    assert "another syncd daemon" in second.stderr
    assert f"pid {running.process.pid}" in second.stderr
    assert "use PostgreSQL to run several replicas" in second.stderr
    assert _stop(running)[0] == 0


def test_without_calendars_no_secret_key_is_needed(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("SYNCD_SECRET_KEY", "NOTIFY_SOCKET")}
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    config = tmp_path / "syncd.toml"
    config.write_text("[http]\nenabled = false\n")
    result = subprocess.run(
        [*SYNCD, "--config", str(config), "run", "--once"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "failed" not in result.stderr
