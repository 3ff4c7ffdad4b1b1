"""Log output: passwords in URLs and customer fields are redacted, tracebacks carry no locals."""

from __future__ import annotations

import io
import json
import sys

import pytest

from conveyor.workers.logging import REDACTED_KEYS, configure, get_logger, redact_url

SECRET = "s3cr3t-pa55"


@pytest.fixture
def log_output(monkeypatch: pytest.MonkeyPatch):
    """configure() writes to sys.stderr as it is at configure time: point it at a StringIO."""
    def start(log_format: str = "json", level: str = "DEBUG") -> io.StringIO:
        buffer = io.StringIO()
        monkeypatch.setattr(sys, "stderr", buffer)
        configure(log_format=log_format, level=level)
        return buffer
    return start


def json_lines(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://app:pw@db:5432/conveyor", "postgresql://app:***@db:5432/conveyor"),
        ("amqp://guest:guest@127.0.0.1:5672/%2F", "amqp://guest:***@127.0.0.1:5672/%2F"),
        ("AMQPS://u:p@h/", "AMQPS://u:***@h/"),
        ("amqp://:only-password@h/", "amqp://:***@h/"),
        ("postgresql://app@db/conveyor", "postgresql://app@db/conveyor"),
        ("http://example.com:8080/path", "http://example.com:8080/path"),
        ("a postgresql://a:1@h/x and amqp://b:2@h/", "a postgresql://a:***@h/x and amqp://b:***@h/"),
        ("no url here", "no url here"),
    ],
)
def test_redact_url_hides_only_the_password(text: str, expected: str) -> None:
    assert redact_url(text) == expected


def test_url_passwords_are_redacted_in_fields_and_in_the_event(log_output) -> None:
    # Given JSON logging
    out = log_output("json")

    # When a URL with a password is logged, as a field and inside the message
    get_logger().info(f"connecting to amqp://guest:{SECRET}@broker/", database_url=f"postgresql://app:{SECRET}@db/x")

    # Then the password appears nowhere, the rest of the URL does
    [record] = json_lines(out)
    assert SECRET not in out.getvalue()
    assert record["database_url"] == "postgresql://app:***@db/x"
    assert record["event"] == "connecting to amqp://guest:***@broker/"


@pytest.mark.parametrize("key", sorted(REDACTED_KEYS))
def test_personal_and_secret_fields_are_redacted(log_output, key: str) -> None:
    # Given JSON logging
    out = log_output("json")

    # When a sensitive field is logged
    get_logger().info("order received", **{key: "cust-123-private"}, order_id="o-1")

    # Then its value is replaced, other fields are kept
    [record] = json_lines(out)
    assert record[key] == "***"
    assert record["order_id"] == "o-1"
    assert "cust-123-private" not in out.getvalue()


def _connect(dsn: str) -> None:
    local_secret = f"token-{SECRET}"  # noqa: F841 - a local that must not reach the logs
    raise ConnectionError("broker refused the connection")


def test_json_exceptions_are_structured_without_locals(log_output) -> None:
    # Given JSON logging and an error raised in a frame holding secrets in its locals
    out = log_output("json")
    try:
        _connect(f"postgresql://app:{SECRET}@db/x")
    except ConnectionError:
        # When it is logged with its traceback
        get_logger().exception("connect failed")

    # Then the traceback names the frames but holds no local variable values
    [record] = json_lines(out)
    [exception] = record["exception"]
    assert exception["exc_type"] == "ConnectionError"
    assert [frame["name"] for frame in exception["frames"]][-1] == "_connect"
    assert all("locals" not in frame or not frame["locals"] for frame in exception["frames"])
    assert SECRET not in out.getvalue()


def test_console_exceptions_have_no_locals(log_output) -> None:
    # Given console logging and the same error
    out = log_output("console")
    try:
        _connect(f"postgresql://app:{SECRET}@db/x")
    except ConnectionError:
        # When it is logged with its traceback
        get_logger().exception("connect failed")

    # Then the plain traceback is printed, with no locals
    text = out.getvalue()
    assert "_connect" in text
    assert "ConnectionError: broker refused the connection" in text
    assert SECRET not in text


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_a_url_password_in_an_exception_message_is_redacted(log_output, log_format: str) -> None:
    # Given an error whose message carries a connection URL with its password
    out = log_output(log_format)
    try:
        raise ConnectionError(f"cannot connect to postgresql://app:{SECRET}@db:5432/conveyor")
    except ConnectionError:
        # When it is logged with its traceback
        get_logger().exception("connect failed")

    # Then the password is redacted there too, like everywhere else in the output
    text = out.getvalue()
    assert "postgresql://app:***@db:5432/conveyor" in text
    assert SECRET not in text


def test_the_level_filter_applies(log_output) -> None:
    out = log_output("json", level="WARNING")
    log = get_logger()
    log.info("quiet")
    log.warning("loud")
    assert [r["event"] for r in json_lines(out)] == ["loud"]


def test_standard_library_loggers_are_rendered_as_json_with_their_name(log_output) -> None:
    import logging

    # Given JSON logging
    out = log_output("json", level="INFO")

    # When psycopg_pool's logger (a standard-library one) and ours both log
    logging.getLogger("psycopg.pool").warning("pool %s exhausted at postgresql://a:%s@db/x", "p1", SECRET)
    logging.getLogger("psycopg.pool").debug("below the level")
    get_logger("conveyor.processor").info("message_processed")

    # Then every line is JSON, carries its logger's name, and is redacted like ours
    first, second = json_lines(out)
    assert first["logger"] == "psycopg.pool" and first["level"] == "warning"
    assert first["event"] == "pool p1 exhausted at postgresql://a:***@db/x"
    assert second["logger"] == "conveyor.processor"
    assert SECRET not in out.getvalue()


def test_no_color_turns_colours_off_in_console_mode(log_output, monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    configure(log_format="console", level="INFO")
    get_logger("conveyor").info("coloured")
    assert "\x1b[" in sys.stderr.getvalue()

    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setattr(sys, "stderr", Terminal())
    configure(log_format="console", level="INFO")
    get_logger("conveyor").info("plain")
    assert "plain" in sys.stderr.getvalue() and "\x1b[" not in sys.stderr.getvalue()
