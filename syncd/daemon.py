"""`syncd run`: periodic jobs on APScheduler 3, the HTTP ops endpoints, signals and sd_notify.

Jobs are plain functions `func(ctx: JobContext) -> int` (the number of items handled) wrapped
in `Job`s; `default_jobs(config)` lists the built-in ones and, when their modules exist, the
calendar sync (`syncd.sync.sync_due_calendars`), the outbox drain
(`syncd.outbox.drain_outbox`) and, with an HTTPS `[http] public_url`, the renewal of Google push
channels (`syncd.push.renew_watch_channels`). Every run is wrapped: an exception is logged with its traceback
and counted, and never stops the scheduler or the other jobs.

Shutdown (SIGTERM/SIGINT): stop scheduling, let in-flight jobs finish up to a deadline (jobs
check `ctx.stop` between items), release this owner's leases, exit. SIGHUP re-reads the config.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor as SchedulerPool
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from syncd.booking import mark_past_completed
from syncd.config import Config, load_config, resolve_database_url
from syncd.errors import ConfigError, SyncdError, UserError
from syncd.leases import lock_single_instance, make_owner_id, release_all_leases
from syncd.logs import configure_logging
from syncd.notify import Notifier, WatchdogPinger, watchdog_interval
from syncd.ops import HttpServer, Metrics, OpsContext, build_http_app, parse_listen
from syncd.store.db import Database
from syncd.store.housekeeping import delete_busy_ended_before, outbox_backlog
from syncd.timeutil import utc_now

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 2.0
HTTP_STOP_TIMEOUT_S = 2.0


# -- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DaemonSettings:
    """[daemon] and [http] options (see deploy/syncd.toml.example)."""

    workers: int = 4
    network_workers: int = 8
    lease_seconds: int = 300
    batch_size: int = 20
    shutdown_timeout_seconds: float = 6.0
    upgrade_schema: bool = True
    sync_check_seconds: float = 15.0
    outbox_interval_seconds: float = 5.0
    housekeeping_interval_seconds: float = 60.0
    busy_retention_hours: float = 24.0
    http_enabled: bool = True
    listen: str = "127.0.0.1:8470"

    @classmethod
    def from_config(cls, config: Config) -> DaemonSettings:
        source = str(config.path or "config")
        values = {
            name: _option(config, source, "daemon", name, getattr(cls, name))
            for name in _DAEMON_OPTIONS
        }
        values["http_enabled"] = _option(config, source, "http", "enabled", cls.http_enabled)
        values["listen"] = _option(config, source, "http", "listen", cls.listen)
        parse_listen(values["listen"], source)
        return cls(**values)

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.lease_seconds)


_DAEMON_OPTIONS = (
    "workers",
    "network_workers",
    "lease_seconds",
    "batch_size",
    "shutdown_timeout_seconds",
    "upgrade_schema",
    "sync_check_seconds",
    "outbox_interval_seconds",
    "housekeeping_interval_seconds",
    "busy_retention_hours",
)


def _option(config: Config, source: str, section: str, name: str, default: Any) -> Any:
    """The option's value, of the default's type (an int is fine for a float), positive."""
    value = config.get(section, name, default)
    kind = type(default)
    numeric_ok = kind is float and isinstance(value, int) and not isinstance(value, bool)
    if not (numeric_ok or type(value) is kind):
        raise ConfigError(f"{source}: [{section}] {name} must be a {kind.__name__}, got {value!r}")
    if kind in (int, float) and value <= 0:
        raise ConfigError(f"{source}: [{section}] {name} must be positive, got {value!r}")
    return float(value) if kind is float else value


# -- jobs -------------------------------------------------------------------------------------


@dataclass
class JobContext:
    """Everything a job may use. `config`/`settings` are replaced on SIGHUP: read them per run."""

    db: Database
    config: Config
    settings: DaemonSettings
    owner: str
    metrics: Metrics
    stop: threading.Event
    network: ThreadPoolExecutor  # bounds concurrent calls to calendar servers
    wake: Callable[[str], None] = lambda _name: None
    clock: Callable[[], datetime] = utc_now

    def now(self) -> datetime:
        return self.clock()


JobFunc = Callable[[JobContext], int]


@dataclass(frozen=True)
class Job:
    name: str
    interval: timedelta
    func: JobFunc
    jitter: float = 0.0  # seconds each run may be delayed, so replicas spread out


def complete_past_bookings(ctx: JobContext) -> int:
    return mark_past_completed(ctx.db, ctx.now())


def prune_busy_cache(ctx: JobContext) -> int:
    """Busy rows that ended before the sync window's start are never read again."""
    cutoff = ctx.now() - timedelta(hours=ctx.settings.busy_retention_hours)
    with ctx.db.write_session() as session:
        return delete_busy_ended_before(session, cutoff)


def measure_outbox(ctx: JobContext) -> int:
    now = ctx.now()
    with ctx.db.session() as session:
        backlog = outbox_backlog(session, now)
    lag = (now - backlog.oldest_due).total_seconds() if backlog.oldest_due else 0.0
    ctx.metrics.outbox_backlog(backlog.pending, lag)
    return backlog.pending


def default_jobs(config: Config) -> list[Job]:
    """The daemon's jobs with their intervals from the config."""
    from syncd.outbox import drain_outbox  # imported here: both modules import JobContext
    from syncd.push import RENEW_INTERVAL, push_settings, renew_watch_channels
    from syncd.sync import sync_due_calendars

    settings = DaemonSettings.from_config(config)
    housekeeping = timedelta(seconds=settings.housekeeping_interval_seconds)
    # Google push channels only when Google can reach us: [http] public_url over HTTPS.
    push = [Job("renew_watch_channels", RENEW_INTERVAL, renew_watch_channels, jitter=60.0)]
    return [
        Job(
            "sync_calendars",
            timedelta(seconds=settings.sync_check_seconds),
            sync_due_calendars,
            jitter=2.0,
        ),
        Job(
            "drain_outbox",
            timedelta(seconds=settings.outbox_interval_seconds),
            drain_outbox,
            jitter=0.5,
        ),
        Job("complete_past_bookings", housekeeping, complete_past_bookings, jitter=5.0),
        Job("prune_busy_cache", housekeeping * 10, prune_busy_cache, jitter=30.0),
        Job("measure_outbox", timedelta(seconds=15), measure_outbox, jitter=1.0),
        *(push if push_settings(config) else []),
    ]


def config_changes(old: Config, new: Config) -> list[str]:
    """Every option added, removed or changed, as "[section] key". Values are left out:
    some are secrets."""
    changed = []
    for section in sorted(set(old.sections) | set(new.sections)):
        before, after = old.section(section), new.section(section)
        for key in sorted(set(before) | set(after)):
            if before.get(key) != after.get(key):
                changed.append(f"[{section}] {key}")
    return changed


_NEEDS_RESTART = ("[database]", "[http]", "[daemon] workers", "[daemon] network_workers")


# -- the daemon -------------------------------------------------------------------------------


@dataclass
class _RunState:
    lock: threading.Condition = field(default_factory=threading.Condition)
    in_flight: Counter[str] = field(default_factory=Counter)
    rerun: set[str] = field(default_factory=set)


class Daemon:
    def __init__(
        self,
        db: Database,
        config: Config,
        jobs: Sequence[Job],
        *,
        owner: str | None = None,
        metrics: Metrics | None = None,
        notifier: Notifier | None = None,
        config_loader: Callable[[], Config] | None = None,
        job_factory: Callable[[Config], list[Job]] | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        settings = DaemonSettings.from_config(config)
        self.ctx = JobContext(
            db=db,
            config=config,
            settings=settings,
            owner=owner or make_owner_id(),
            metrics=metrics or Metrics(),
            stop=threading.Event(),
            network=ThreadPoolExecutor(settings.network_workers, "syncd-net"),
            wake=self.wake,
            clock=clock,
        )
        self.jobs = {job.name: job for job in jobs}
        self._config_loader = config_loader
        self._job_factory = job_factory
        self._notifier = notifier or Notifier.from_environment()
        self._state = _RunState()
        self._scheduler = self._make_scheduler(settings)
        self._heartbeat = time.monotonic()
        self._http: HttpServer | None = None
        self._watchdog: WatchdogPinger | None = None
        self._signalled = threading.Event()
        self._stop_requested = False
        self._reload_requested = False

    # -- running jobs -------------------------------------------------------------------------

    def run_once(self) -> list[str]:
        """Run every job once, in order, in this thread; returns the names of those that
        failed. One job failing does not stop the others."""
        return [name for name, job in self.jobs.items() if not self._invoke(job)]

    def _invoke(self, job: Job) -> bool:
        started = time.monotonic()
        try:
            handled = job.func(self.ctx)
        except UserError as error:  # a message for the admin (missing key, bad config)
            log.error("job %s failed: %s", job.name, error, extra={"job": job.name})
            ok = False
        except Exception:
            log.exception("job %s failed", job.name, extra={"job": job.name})
            ok = False
        else:
            log.debug("job %s handled %s item(s)", job.name, handled, extra={"job": job.name})
            ok = True
        self.ctx.metrics.job_finished(job.name, time.monotonic() - started, ok)
        return ok

    def _run_scheduled(self, job: Job) -> None:
        if self.ctx.stop.is_set():
            return  # queued before shutdown began: take no new work
        with self._tracking(job.name):
            while True:
                self._invoke(job)
                with self._state.lock:
                    again = job.name in self._state.rerun and not self.ctx.stop.is_set()
                    self._state.rerun.discard(job.name)
                if not again:
                    return

    @contextmanager
    def _tracking(self, name: str) -> Iterator[None]:
        with self._state.lock:
            self._state.in_flight[name] += 1
        try:
            yield
        finally:
            with self._state.lock:
                self._state.in_flight[name] -= 1
                self._state.lock.notify_all()

    def wake(self, name: str) -> None:
        """Run job `name` now (e.g. drain the outbox right after a booking). If it is running,
        it runs once more when it finishes, so work queued meanwhile is not left waiting."""
        if name not in self.jobs:
            log.warning("wake: no job named %s", name)
            return
        with self._state.lock:
            if self._state.in_flight[name]:
                self._state.rerun.add(name)
                return
        if self._scheduler.running and not self.ctx.stop.is_set():
            with suppress(LookupError):  # removed concurrently by shutdown
                self._scheduler.modify_job(name, next_run_time=datetime.now(UTC))

    # -- scheduler ----------------------------------------------------------------------------

    def _make_scheduler(self, settings: DaemonSettings) -> BackgroundScheduler:
        return BackgroundScheduler(
            executors={
                "default": SchedulerPool(settings.workers),
                # Its own thread, so long jobs filling the pool do not look like a hang.
                "heartbeat": SchedulerPool(1),
            },
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=UTC,
        )

    def _schedule(self, job: Job) -> None:
        self._scheduler.add_job(
            self._run_scheduled,
            _trigger(job),
            args=[job],
            id=job.name,
            name=job.name,
            next_run_time=datetime.now(UTC),
            replace_existing=True,
        )

    def _beat(self) -> None:
        self._heartbeat = time.monotonic()

    def healthy(self) -> bool:
        """The scheduler runs and still dispatches work (its heartbeat job is recent)."""
        fresh = time.monotonic() - self._heartbeat < HEARTBEAT_SECONDS * 5
        return bool(self._scheduler.running) and not self.ctx.stop.is_set() and fresh

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, *, serve_http: bool = True) -> None:
        settings = self.ctx.settings
        if serve_http and settings.http_enabled:
            self._start_http(settings.listen)
        for job in self.jobs.values():
            self._schedule(job)
        self._scheduler.add_job(
            self._beat, "interval", seconds=HEARTBEAT_SECONDS, id="_heartbeat",
            executor="heartbeat", next_run_time=datetime.now(UTC),
        )  # fmt: skip
        self._scheduler.start()
        self._start_watchdog()
        log.info("syncd running as %s with jobs: %s", self.ctx.owner, ", ".join(self.jobs))
        self._notifier.ready(f"running {len(self.jobs)} jobs")

    @property
    def http_address(self) -> tuple[str, int] | None:
        return self._http.address if self._http else None

    def _start_http(self, listen: str) -> None:
        host, port = parse_listen(listen)
        ops = OpsContext(
            db=self.ctx.db,
            metrics=self.ctx.metrics,
            config=self.ctx.config,
            scheduler_running=self.healthy,
            wake=self.wake,
        )
        self._http = HttpServer(build_http_app(ops), host, port)
        self._http.start()

    def _start_watchdog(self) -> None:
        interval = watchdog_interval()
        if interval is not None and self._notifier.enabled:
            self._watchdog = WatchdogPinger(self._notifier, interval, self.healthy)
            self._watchdog.start()

    def shutdown(self) -> bool:
        """Stop taking work, wait for in-flight jobs up to the deadline, release leases.
        Returns False when jobs were still running at the deadline."""
        self.ctx.stop.set()
        self._notifier.stopping("stopping: finishing in-flight work")
        if self._http is not None:
            self._http.stop(HTTP_STOP_TIMEOUT_S)
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        if self._watchdog is not None:
            self._watchdog.stop()
        finished = self._wait_idle(self.ctx.settings.shutdown_timeout_seconds)
        self.ctx.network.shutdown(wait=False, cancel_futures=True)
        try:
            release_all_leases(self.ctx.db, self.ctx.owner)
        except Exception:
            log.exception("could not release leases; they expire on their own")
        return finished

    def _wait_idle(self, timeout: float) -> bool:
        with self._state.lock:
            idle = self._state.lock.wait_for(
                lambda: not any(self._state.in_flight.values()), timeout=timeout
            )
            busy = sorted(name for name, n in self._state.in_flight.items() if n)
        if not idle:
            log.warning("jobs still running after %.0fs, abandoning them: %s", timeout, busy)
        return idle

    # -- signals ------------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGHUP, self._on_reload_signal)

    def _on_stop_signal(self, signum: int, _frame: FrameType | None) -> None:
        # Handlers only set flags: the main loop does the work outside signal context.
        self._stop_requested = True
        self._signalled.set()

    def _on_reload_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._reload_requested = True
        self._signalled.set()

    def request_stop(self) -> None:
        self._stop_requested = True
        self._signalled.set()

    def wait_until_stopped(self) -> None:
        """The main thread's loop: handles reloads until a stop is requested."""
        while not self._stop_requested:
            self._signalled.wait(1.0)
            self._signalled.clear()
            if self._reload_requested and not self._stop_requested:
                self._reload_requested = False
                self.reload()
        log.info("stop requested; shutting down")

    def reload(self) -> None:
        """Re-read the config file; keep the old one if the new one is invalid."""
        if self._config_loader is None:
            log.info("reload requested, but there is no config file to re-read")
            return
        self._notifier.reloading()
        try:
            config = self._config_loader()
            settings = DaemonSettings.from_config(config)
            jobs = self._job_factory(config) if self._job_factory else None
        except SyncdError as error:
            log.error("config reload failed, keeping the running config: %s", error)
            self._notifier.ready("running (config reload failed)")
            return
        self._apply(config, settings, jobs)
        self._notifier.ready(f"running {len(self.jobs)} jobs (config reloaded)")

    def _apply(self, config: Config, settings: DaemonSettings, jobs: list[Job] | None) -> None:
        changes = config_changes(self.ctx.config, config)
        log.info("config reloaded: %s", ", ".join(changes) if changes else "nothing changed")
        later = [change for change in changes if change.startswith(_NEEDS_RESTART)]
        if later:
            log.warning("these changes take effect after a restart: %s", ", ".join(later))
        self.ctx.config, self.ctx.settings = config, settings
        for job in jobs or ():
            current = self.jobs.get(job.name)
            if current and (current.interval, current.jitter) != (job.interval, job.jitter):
                self.jobs[job.name] = job
                if self._scheduler.running:
                    self._scheduler.reschedule_job(job.name, trigger=_trigger(job))
                log.info("job %s now runs every %s", job.name, job.interval)


def _trigger(job: Job) -> IntervalTrigger:
    return IntervalTrigger(seconds=job.interval.total_seconds(), jitter=job.jitter or None)


# -- entry point ------------------------------------------------------------------------------


def ensure_schema(db: Database, settings: DaemonSettings) -> None:
    """Refuse to run on an old schema, unless allowed to upgrade it."""
    if not db.needs_upgrade():
        return
    current, head = db.current_revision(), db.head_revision()
    if not settings.upgrade_schema:
        raise UserError(
            f"database schema is at revision {current}, this syncd needs {head}: run "
            "`syncd db upgrade` (or set [daemon] upgrade_schema = true)"
        )
    log.warning("database schema is at revision %s; upgrading it to %s", current, head)
    db.upgrade()
    log.info("database schema upgraded to %s", head)


def run(config_path: str | None, database_url: str | None, *, once: bool, verbose: bool) -> int:
    """`syncd run [--once]`: returns the exit status."""
    configure_logging(logging.DEBUG if verbose else logging.INFO)
    config = load_config(config_path)
    url = resolve_database_url(database_url, config)
    lock = lock_single_instance(url)
    db = Database(url)
    try:
        ensure_schema(db, DaemonSettings.from_config(config))
        daemon = Daemon(
            db,
            config,
            default_jobs(config),
            config_loader=lambda: load_config(config_path),
            job_factory=default_jobs,
        )
        return _run_once(daemon) if once else _serve(daemon)
    finally:
        db.dispose()
        if lock is not None:
            lock.release()


def _run_once(daemon: Daemon) -> int:
    failed = daemon.run_once()
    daemon.ctx.network.shutdown(wait=True, cancel_futures=True)
    if failed:
        log.error("jobs failed: %s", ", ".join(failed))
        return 1
    return 0


def _serve(daemon: Daemon) -> int:
    daemon.install_signal_handlers()
    try:
        daemon.start()
    except BaseException:
        daemon.shutdown()
        raise
    daemon.wait_until_stopped()
    if not daemon.shutdown():
        # Worker threads still running would keep the interpreter alive at exit (it joins
        # them); their leases are released, so leave now rather than overrun systemd's timeout.
        logging.shutdown()
        os._exit(0)
    log.info("syncd stopped")
    return 0
