"""/healthz, /readyz and /metrics served by the real uvicorn server on a free local port."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from syncd.config import Config
from syncd.errors import ConfigError
from syncd.ops import HttpServer, Metrics, OpsContext, build_http_app, parse_listen
from syncd.store.db import Database

UNREACHABLE_DB = "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2"

Serve = Callable[..., str]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Starts the ops app for a context on 127.0.0.1:<free port>; returns its base URL."""
    servers: list[HttpServer] = []

    def start(ctx: OpsContext) -> str:
        server = HttpServer(build_http_app(ctx), "127.0.0.1", 0)
        servers.append(server)
        server.start()
        host, port = server.address
        return f"http://{host}:{port}"

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'ops.db'}")
    db.upgrade()
    yield db
    db.dispose()


def _ctx(db: Database, running: bool = True, metrics: Metrics | None = None) -> OpsContext:
    return OpsContext(
        db=db, metrics=metrics or Metrics(), config=Config(), scheduler_running=lambda: running
    )


def test_healthz_and_readyz_when_all_is_well(serve: Serve, sqlite_db: Database) -> None:
    base = serve(_ctx(sqlite_db))
    with httpx.Client(base_url=base, timeout=5) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "reasons": []}


def test_readyz_is_503_with_reasons_when_the_database_is_unreachable(serve: Serve) -> None:
    db = Database(UNREACHABLE_DB)
    try:
        base = serve(_ctx(db, running=False))
        with httpx.Client(base_url=base, timeout=10) as client:
            assert client.get("/healthz").status_code == 200
            ready = client.get("/readyz")
    finally:
        db.dispose()
    assert ready.status_code == 503
    assert ready.json()["reasons"] == ["database unreachable", "scheduler not running"]


def test_metrics_are_prometheus_text(serve: Serve, sqlite_db: Database) -> None:
    metrics = Metrics()
    metrics.pull_finished("caldav", 0.3, ok=True)
    metrics.pull_finished("google", 1.5, ok=False)
    metrics.outbox_backlog(pending=4, lag_seconds=12.5)
    metrics.booking_created()
    metrics.quota_denied("exhausted")
    metrics.job_finished("drain_outbox", 0.01, ok=False)
    base = serve(_ctx(sqlite_db, metrics=metrics))

    with httpx.Client(base_url=base, timeout=5) as client:
        response = client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    body = response.text
    for line in (
        'syncd_pulls_total{provider="caldav"} 1.0',
        'syncd_pull_failures_total{provider="google"} 1.0',
        'syncd_pull_duration_seconds_count{provider="google"} 1.0',
        "syncd_outbox_pending 4.0",
        "syncd_outbox_lag_seconds 12.5",
        "syncd_bookings_created_total 1.0",
        'syncd_quota_denials_total{reason="exhausted"} 1.0',
        'syncd_job_failures_total{job="drain_outbox"} 1.0',
    ):
        assert line in body


def test_each_metrics_object_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.booking_created()
    assert b"syncd_bookings_created_total 1.0" in first.render()
    assert b"syncd_bookings_created_total 0.0" in second.render()


def test_a_busy_port_is_a_clear_config_error(sqlite_db: Database) -> None:
    server = HttpServer(build_http_app(_ctx(sqlite_db)), "127.0.0.1", 0)
    try:
        with pytest.raises(ConfigError, match=r"cannot listen on 127\.0\.0\.1"):
            HttpServer(build_http_app(_ctx(sqlite_db)), "127.0.0.1", server.address[1])
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("value", "expected"),
    [("127.0.0.1:8470", ("127.0.0.1", 8470)), ("[::1]:9000", ("::1", 9000))],
)
def test_parse_listen(value: str, expected: tuple[str, int]) -> None:
    assert parse_listen(value) == expected


@pytest.mark.parametrize("value", ["8470", "127.0.0.1:", "127.0.0.1:99999", ":80", 8470])
def test_parse_listen_refuses_bad_values(value: object) -> None:
    with pytest.raises(ConfigError, match=r"\[http\] listen"):
        parse_listen(value, "/etc/syncd/syncd.toml")
