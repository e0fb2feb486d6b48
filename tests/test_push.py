"""Google push notifications: channels against FakeGoogle through the real client, the webhook
served by the daemon's real HTTP app, and a notification leading to one incremental pull."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from syncd.calendars import configure_calendar, remove_calendar
from syncd.config import Config
from syncd.daemon import default_jobs
from syncd.ops import HttpServer, Metrics, OpsContext, build_http_app
from syncd.push import PUSH_PATH, push_settings, renew_watch_channels
from syncd.secrets import SecretBox
from syncd.store import watch as watch_store
from syncd.store.db import Database
from syncd.store.models import PushChannel
from syncd.sync import sync_due_calendars, sync_now
from tests.fake_google import FakeGoogle
from tests.test_sync import KEY, _google_event, _z, add_calendar, busy, calendar_row, job_context

CALENDAR = "ana@example.org"
WEEK = timedelta(days=7)


@dataclass
class Receiver:
    """The daemon's HTTP app on a free port; `woken` records the jobs it woke."""

    base_url: str
    woken: list[str] = field(default_factory=list)


@pytest.fixture
def google() -> Iterator[FakeGoogle]:
    with FakeGoogle() as fake:
        fake.allow_http_webhooks = True  # the receiver is plain HTTP on 127.0.0.1
        fake.add_calendar(CALENDAR, time_zone="Europe/Berlin", primary=True)
        yield fake


@pytest.fixture
def receiver(world: Database) -> Iterator[Receiver]:
    woken: list[str] = []
    ops = OpsContext(
        db=world,
        metrics=Metrics(),
        config=Config(),
        scheduler_running=lambda: True,
        wake=woken.append,
    )
    server = HttpServer(build_http_app(ops), "127.0.0.1", 0)
    server.start()
    host, port = server.address
    try:
        yield Receiver(f"http://{host}:{port}", woken)
    finally:
        server.stop()


@pytest.fixture
def config(google: FakeGoogle, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("SYNCD_SECRET_KEY", KEY)
    return Config(
        sections={
            "google": {
                "api_endpoint": google.api_endpoint,
                "token_uri": google.token_uri,
                "allow_insecure_push": True,
            },
            "http": {"public_url": receiver.base_url + "/"},
        }
    )


@pytest.fixture
def calendar_id(world: Database, google: FakeGoogle) -> int:
    grant = {
        "client_id": "client-1",
        "client_secret": "s3cret",
        "refresh_token": google.issue_refresh_token("client-1"),
    }
    return add_calendar(
        world,
        provider="google",
        remote_id=CALENDAR,
        secret=SecretBox(KEY).encrypt(json.dumps(grant)),
    )


def renew(db: Database, config: Config, now: datetime) -> int:
    ctx = job_context(db, config, now)
    try:
        return renew_watch_channels(ctx)
    finally:
        ctx.network.shutdown()


def stored_channels(db: Database, calendar_id: int) -> list[PushChannel]:
    with db.session() as session:
        return list(watch_store.channels_of(session, calendar_id))


def post_notification(
    receiver: Receiver, channel_id: str | None, token: str | None, state: str
) -> int:
    headers = {"X-Goog-Resource-State": state, "X-Goog-Message-Number": "1"}
    if channel_id is not None:
        headers["X-Goog-Channel-ID"] = channel_id
    if token is not None:
        headers["X-Goog-Channel-Token"] = token
    response = httpx.post(receiver.base_url + PUSH_PATH, headers=headers, timeout=5)
    return response.status_code


# -- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("http", "google", "address"),
    [
        ({}, {}, None),
        ({"public_url": "http://book.example.org"}, {}, None),
        ({"public_url": "https://book.example.org/"}, {}, "https://book.example.org/google/push"),
        (
            {"public_url": "http://127.0.0.1:8470"},
            {"allow_insecure_push": True},
            "http://127.0.0.1:8470/google/push",
        ),
    ],
)
def test_push_is_on_only_with_an_https_public_url_or_explicit_insecure_push(
    http: dict[str, object], google: dict[str, object], address: str | None
) -> None:
    config = Config(sections={"http": http, "google": google})
    settings = push_settings(config)
    assert (settings.address if settings else None) == address
    job_names = {job.name for job in default_jobs(config)}
    assert ("renew_watch_channels" in job_names) == (address is not None)


# -- channels ---------------------------------------------------------------------------------


def test_a_channel_is_opened_stored_and_renewed_before_it_expires(
    world: Database, google: FakeGoogle, config: Config, receiver: Receiver, calendar_id: int
) -> None:
    now = datetime.now(UTC)
    assert renew(world, config, now) == 1
    [first] = stored_channels(world, calendar_id)
    remote = google.channels[first.channel_id]
    assert remote.address == receiver.base_url + PUSH_PATH
    assert remote.token == first.token and len(first.token) >= 32
    assert remote.resource_id == first.resource_id
    assert abs(first.expiration - (now + WEEK)) < timedelta(minutes=1)
    assert renew(world, config, now + timedelta(days=5)) == 0  # not yet within the margin

    later = now + timedelta(days=6, hours=12)  # within a day of expiry
    google.clock = later.timestamp
    assert renew(world, config, later) == 1
    [second] = stored_channels(world, calendar_id)
    assert second.channel_id != first.channel_id and second.token != first.token
    assert set(google.channels) == {second.channel_id}
    # The new channel was open before the old one was stopped: no gap without notifications.
    calls = [r.path.rsplit("/", 1)[-1] for r in google.requests if r.method == "POST"]
    assert calls[-2:] == ["watch", "stop"]
    assert google.requests_to("POST", "/channels/stop")[-1].body == {
        "id": first.channel_id,
        "resourceId": first.resource_id,
    }


def test_a_failed_watch_is_logged_and_retried_at_the_next_run(
    world: Database,
    google: FakeGoogle,
    config: Config,
    calendar_id: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    google.allow_http_webhooks = False  # Google refuses a plain HTTP address
    now = datetime.now(UTC)
    with caplog.at_level(logging.WARNING, logger="syncd.push"):
        assert renew(world, config, now) == 0
    assert "could not open a push channel" in caplog.text and "webhookUrlNotHttps" in caplog.text
    assert stored_channels(world, calendar_id) == []
    google.allow_http_webhooks = True
    assert renew(world, config, now) == 1
    assert len(stored_channels(world, calendar_id)) == 1


def test_channels_are_stopped_when_the_calendar_is_removed_or_stops_blocking(
    world: Database, google: FakeGoogle, config: Config, calendar_id: int
) -> None:
    now = datetime.now(UTC)
    assert renew(world, config, now) == 1
    configure_calendar(world, calendar_id, blocks=False)
    assert renew(world, config, now) == 0
    assert google.channels == {} and stored_channels(world, calendar_id) == []

    configure_calendar(world, calendar_id, blocks=True)
    assert renew(world, config, now) == 1
    [channel] = stored_channels(world, calendar_id)
    remove_calendar(world, calendar_id, config=config)
    assert google.channels == {}
    assert google.requests_to("POST", "/channels/stop")[-1].body["id"] == channel.channel_id
    with world.session() as session:
        assert watch_store.all_channels(session) == []


def test_stopping_a_channel_google_no_longer_knows_counts_as_done(
    world: Database, google: FakeGoogle, config: Config, calendar_id: int
) -> None:
    assert renew(world, config, datetime.now(UTC)) == 1
    google.channels.clear()  # expired or stopped on Google's side
    remove_calendar(world, calendar_id, config=config)
    assert google.requests_to("POST", "/channels/stop")  # answered 404, removal went on


# -- the webhook ------------------------------------------------------------------------------


def test_the_webhook_checks_channel_and_token_and_makes_the_calendar_due(
    world: Database,
    config: Config,
    receiver: Receiver,
    calendar_id: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = datetime.now(UTC)
    sync_now(world, config, calendar_ids=[calendar_id], now=now)
    not_due = calendar_row(world, calendar_id).next_sync_at
    assert not_due is not None and not_due > now
    assert renew(world, config, now) == 1
    [channel] = stored_channels(world, calendar_id)

    assert post_notification(receiver, channel.channel_id, channel.token, "sync") == 204
    assert calendar_row(world, calendar_id).next_sync_at == not_due and receiver.woken == []

    wrong = "x" * len(channel.token)
    with caplog.at_level(logging.WARNING, logger="syncd.push"):
        assert post_notification(receiver, channel.channel_id, wrong, "exists") == 403
        assert post_notification(receiver, channel.channel_id, None, "exists") == 403
    assert "wrong token" in caplog.text and wrong not in caplog.text
    assert channel.token not in caplog.text
    assert post_notification(receiver, "no-such-channel", channel.token, "exists") == 404
    assert post_notification(receiver, None, channel.token, "exists") == 400
    assert calendar_row(world, calendar_id).next_sync_at == not_due and receiver.woken == []

    assert post_notification(receiver, channel.channel_id, channel.token, "exists") == 204
    due = calendar_row(world, calendar_id).next_sync_at
    assert due is not None and due <= datetime.now(UTC)
    assert receiver.woken == ["sync_calendars"]


# -- end to end -------------------------------------------------------------------------------


def test_a_change_on_google_is_pulled_incrementally_after_its_notification(
    world: Database, google: FakeGoogle, config: Config, receiver: Receiver, calendar_id: int
) -> None:
    start = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    google.put_event(CALENDAR, _google_event("meet1", start))
    [first] = sync_now(world, config, calendar_ids=[calendar_id], now=datetime.now(UTC))
    assert first.result is not None and first.result.full
    assert renew(world, config, datetime.now(UTC)) == 1

    moved = start + timedelta(hours=3)
    google.change_event(
        CALENDAR,
        "meet1",
        start={"dateTime": _z(moved)},
        end={"dateTime": _z(moved + timedelta(hours=1))},
    )
    deliveries = google.notify(CALENDAR)
    assert [(d.state, d.status) for d in deliveries] == [("sync", 204), ("exists", 204)]
    assert receiver.woken == ["sync_calendars"]

    lists_before = len(google.requests_to("GET", "/events"))
    ctx = job_context(world, config, datetime.now(UTC))
    try:
        assert sync_due_calendars(ctx) == 1  # what the woken job does
    finally:
        ctx.network.shutdown()
    pulls = google.requests_to("GET", "/events")[lists_before:]
    assert len(pulls) == 1 and "syncToken" in pulls[0].query
    assert busy(world, calendar_id) == [(moved, moved + timedelta(hours=1))]
    assert calendar_row(world, calendar_id).next_sync_at > datetime.now(UTC)  # type: ignore[operator]
