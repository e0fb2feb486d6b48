"""Structured logs: the right format for the destination, and secrets never in the output."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from syncd.logs import (
    JournalFormatter,
    JsonFormatter,
    RedactingFilter,
    TextFormatter,
    choose_formatter,
    redact_text,
)

SECRET = "hunter2-s3cr3t"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing JSON through the redaction filter into a buffer."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("syncd.test.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_the_fields_and_extras(
    capture: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = capture
    logger.info("pulled %s: %d changes", "work", 3, extra={"calendar_id": 7})

    (entry,) = _lines(stream)
    assert entry["message"] == "pulled work: 3 changes"
    assert entry["level"] == "INFO"
    assert entry["logger"] == "syncd.test.logs"
    assert entry["calendar_id"] == 7
    assert str(entry["timestamp"]).endswith("+00:00")


@pytest.mark.parametrize(
    ("template", "args"),
    [
        ("connecting with password=%s", (SECRET,)),
        ("config: %r", ({"username": "ada", "password": SECRET},)),
        ("request headers: %s", ("Authorization: Bearer " + SECRET,)),
        ("token response %s", (json.dumps({"access_token": SECRET, "refresh_token": SECRET}),)),
        ("google client_secret: %s", (SECRET,)),
        ("caldav url %s", (f"https://ada:{SECRET}@cal.example.org/dav/",)),
        ("form body %s", (f"grant_type=refresh_token&refresh_token={SECRET}&x=1",)),
    ],
)
def test_secrets_in_messages_never_reach_the_output(
    capture: tuple[logging.Logger, io.StringIO], template: str, args: tuple[object, ...]
) -> None:
    logger, stream = capture
    logger.warning(template, *args)
    output = stream.getvalue()
    assert SECRET not in output
    assert "***" in output


def test_secret_extras_are_masked_by_key(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = capture
    logger.info(
        "account added",
        extra={"password": SECRET, "account": {"user": "ada", "smtp_password": SECRET}},
    )
    (entry,) = _lines(stream)
    assert SECRET not in stream.getvalue()
    assert entry["password"] == "***"
    assert entry["account"] == {"user": "ada", "smtp_password": "***"}


def test_secrets_in_tracebacks_are_masked(capture: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = capture
    try:
        raise RuntimeError(f"login failed for password={SECRET}")
    except RuntimeError:
        logger.exception("job failed")
    (entry,) = _lines(stream)
    assert "RuntimeError" in str(entry["exception"])
    assert SECRET not in stream.getvalue()


def test_text_and_journal_formats_are_redacted_too() -> None:
    record = logging.LogRecord("syncd.x", logging.ERROR, __file__, 1, "pwd=%s", (SECRET,), None)
    record.password = SECRET
    RedactingFilter().filter(record)
    for formatter in (TextFormatter("%(levelname)s %(message)s"), JournalFormatter()):
        assert SECRET not in formatter.format(record)
    assert JournalFormatter().format(record).startswith("<3>syncd.x: ")


def test_the_formatter_follows_the_destination() -> None:
    pipe = io.StringIO()
    assert isinstance(choose_formatter(pipe, {}), JsonFormatter)
    tty = choose_formatter(_Tty(), {})
    assert isinstance(tty, TextFormatter) and not isinstance(tty, JournalFormatter)
    assert isinstance(choose_formatter(pipe, {"JOURNAL_STREAM": "8:1234"}), JournalFormatter)


def test_journal_stream_only_counts_when_stderr_is_that_stream(tmp_path: object) -> None:
    with open(__file__) as not_the_journal:
        formatter = choose_formatter(not_the_journal, {"JOURNAL_STREAM": "1:2"})
    assert isinstance(formatter, JsonFormatter)


def test_redact_text_leaves_ordinary_text_alone() -> None:
    text = "pulled calendar 7 (caldav) in 0.2s: 3 changes"
    assert redact_text(text) == text
