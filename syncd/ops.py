"""Operations over HTTP: /healthz, /readyz, /metrics, and the one ASGI app the daemon serves.

The daemon serves a single FastAPI app: the ops routes from here plus, when `syncd.api` is
present, the JSON API and link pages (`syncd.api.install(app, db, settings)`) and the Google
push webhook (`syncd.api.push`), so health, metrics and the API share one listener. uvicorn runs it in a thread beside the scheduler.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from sqlalchemy import text

from syncd.config import Config
from syncd.errors import ConfigError
from syncd.store.db import Database

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:8470"
READINESS_TIMEOUT_S = 3.0

_PULL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """syncd's Prometheus metrics in a registry of their own (not the process-global one), so
    several daemons in one test process never collide. Other modules call the methods."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.pulls = Counter("syncd_pulls", "Calendar pulls attempted.", ["provider"], registry=r)
        self.pull_failures = Counter(
            "syncd_pull_failures", "Calendar pulls that failed.", ["provider"], registry=r
        )
        self.pull_duration = Histogram(
            "syncd_pull_duration_seconds", "Duration of calendar pulls.", ["provider"],
            buckets=_PULL_BUCKETS, registry=r,
        )  # fmt: skip
        self.outbox_lag = Gauge(
            "syncd_outbox_lag_seconds", "How long the oldest due outbox row has waited.",
            registry=r,
        )  # fmt: skip
        self.outbox_pending = Gauge("syncd_outbox_pending", "Outbox rows pending.", registry=r)
        self.outbox_sent = Counter(
            "syncd_outbox_sent", "Outbox rows processed.", ["kind", "outcome"], registry=r
        )
        self.bookings = Counter("syncd_bookings_created", "Bookings created.", registry=r)
        self.quota_denials = Counter(
            "syncd_quota_denials", "Bookings refused by a quota.", ["reason"], registry=r
        )
        self.job_runs = Counter("syncd_job_runs", "Scheduled job runs.", ["job"], registry=r)
        self.job_failures = Counter(
            "syncd_job_failures", "Scheduled job runs that raised.", ["job"], registry=r
        )
        self.job_duration = Histogram(
            "syncd_job_duration_seconds", "Duration of scheduled job runs.", ["job"], registry=r
        )

    def pull_finished(self, provider: str, seconds: float, ok: bool) -> None:
        self.pulls.labels(provider).inc()
        self.pull_duration.labels(provider).observe(seconds)
        if not ok:
            self.pull_failures.labels(provider).inc()

    def outbox_processed(self, kind: str, outcome: str) -> None:
        """outcome: "done", "retry" or "failed"."""
        self.outbox_sent.labels(kind, outcome).inc()

    def outbox_backlog(self, pending: int, lag_seconds: float) -> None:
        self.outbox_pending.set(pending)
        self.outbox_lag.set(max(lag_seconds, 0.0))

    def booking_created(self) -> None:
        self.bookings.inc()

    def quota_denied(self, reason: str) -> None:
        self.quota_denials.labels(reason).inc()

    def job_finished(self, job: str, seconds: float, ok: bool) -> None:
        self.job_runs.labels(job).inc()
        self.job_duration.labels(job).observe(seconds)
        if not ok:
            self.job_failures.labels(job).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


@dataclass
class OpsContext:
    """What the HTTP side needs from the daemon."""

    db: Database
    metrics: Metrics
    config: Config
    scheduler_running: Callable[[], bool]
    wake: Callable[[str], None] = lambda _name: None


def database_reachable(db: Database) -> bool:
    try:
        with db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:
        log.warning("readiness: database unreachable: %s", error)
        return False
    return True


async def readiness_reasons(ctx: OpsContext) -> list[str]:
    reasons = []
    try:
        reachable = await asyncio.wait_for(
            run_in_threadpool(database_reachable, ctx.db), READINESS_TIMEOUT_S
        )
    except TimeoutError:
        reachable = False
    if not reachable:
        reasons.append("database unreachable")
    if not ctx.scheduler_running():
        reasons.append("scheduler not running")
    return reasons


def ops_router(ctx: OpsContext) -> APIRouter:
    router = APIRouter()

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        reasons = await readiness_reasons(ctx)
        if reasons:
            return JSONResponse({"status": "unavailable", "reasons": reasons}, status_code=503)
        return JSONResponse({"status": "ready", "reasons": []})

    @router.get("/metrics")
    async def metrics() -> Response:
        return Response(ctx.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return router


def build_http_app(ctx: OpsContext) -> FastAPI:
    """The daemon's one ASGI app: ops routes, plus the JSON API when `syncd.api` exists."""
    app = FastAPI(title="syncd", docs_url=None, redoc_url=None)
    app.include_router(ops_router(ctx))
    _install_api(app, ctx)
    return app


def _install_api(app: FastAPI, ctx: OpsContext) -> None:
    """syncd.api.install(app, db, ApiSettings) adds /v1 and the link pages, when present."""
    try:
        api = importlib.import_module("syncd.api")
    except ModuleNotFoundError as error:
        if error.name != "syncd.api":
            raise  # syncd.api exists but something it imports is missing: a real error
        log.info("syncd.api is not installed; serving only /healthz, /readyz and /metrics")
        return
    from syncd.api.push import push_router
    from syncd.services import booking_service

    bookings = booking_service(ctx.db, ctx.config, observer=partial(booking_observed, ctx))
    api.install(app, ctx.db, api.ApiSettings.from_config(ctx.config), bookings=bookings)
    # Google's push notifications: answers 404 to everyone while no channel is open.
    app.include_router(push_router(ctx.db, ctx.wake))


def booking_observed(ctx: OpsContext, event: str, detail: str) -> None:
    """Count bookings and quota denials; drain the outbox at once after any change."""
    if event == "refused":
        if detail == "quota_exhausted":
            ctx.metrics.quota_denied(detail)
        return
    if event == "booked":
        ctx.metrics.booking_created()
    ctx.wake("drain_outbox")


# -- the listener -----------------------------------------------------------------------------


def parse_listen(value: Any, source: str = "config") -> tuple[str, int]:
    """Split "host:port" (IPv6 as "[::1]:8470"), with an error naming the option."""
    if not isinstance(value, str) or ":" not in value:
        raise ConfigError(f'{source}: [http] listen must be "host:port", got {value!r}')
    host, _, port_text = value.rpartition(":")
    host = host.strip("[]")
    if not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f'{source}: [http] listen must be "host:port", got {value!r}')
    return host, int(port_text)


class HttpServer:
    """uvicorn serving `app` in a background thread on a socket bound up front, so a busy port
    fails the daemon's start with a clear message instead of a log line in a thread."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        self._socket = _bind(host, port)
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="syncd-http", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._socket.getsockname()[:2]
        return str(host), int(port)

    def start(self, timeout: float = 5.0) -> None:
        self._thread.start()
        deadline = threading.Event()
        for _ in range(int(timeout / 0.02)):
            if self._server.started or not self._thread.is_alive():
                break
            deadline.wait(0.02)
        if not self._server.started:
            raise RuntimeError(f"HTTP server on {self.address} did not start within {timeout}s")
        log.info("serving HTTP on http://%s:%d", *self.address)

    def stop(self, timeout: float = 3.0) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._socket.close()

    def _serve(self) -> None:
        # Not the main thread, so uvicorn leaves the daemon's signal handlers alone.
        self._server.run(sockets=[self._socket])


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as error:
        sock.close()
        raise ConfigError(f"[http] listen: cannot listen on {host}:{port}: {error}") from None
    sock.set_inheritable(False)
    return sock
