"""structlog configuration: JSON off a TTY, readable on one; no local variables in
tracebacks; passwords in URLs and customer fields redacted. Configure once at start-up."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO, cast

import structlog

_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]*)@", re.I)
REDACTED_KEYS = frozenset({"password", "customer_id", "email", "address", "phone", "body"})


def redact_url(text: str) -> str:
    return _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)


def _redact(_logger: object, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    return {key: "***" if key in REDACTED_KEYS else _redact_value(value) for key, value in event.items()}


def _redact_value(value):
    """URLs with passwords anywhere: nested fields and rendered exceptions included."""
    if isinstance(value, str):
        return redact_url(value) if "://" in value else value
    if isinstance(value, dict):
        return {k: "***" if k in REDACTED_KEYS else _redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_value(v) for v in value]
    return value


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at write time (it may be swapped after configure)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure(*, log_format: str = "auto", level: str = "INFO") -> None:
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    renderer = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
    )
    exception_processor = (
        # dict tracebacks without locals: locals would leak message bodies and DSNs
        structlog.processors.ExceptionRenderer(structlog.tracebacks.ExceptionDictTransformer(show_locals=False))
        if use_json else structlog.processors.format_exc_info
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            exception_processor,
            _redact,  # after the exception is rendered, so its text is redacted too
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level)),
        logger_factory=structlog.WriteLoggerFactory(file=cast(TextIO, _CurrentStderr())),  # write+flush suffice
        cache_logger_on_first_use=True,
    )
    logging.getLogger("pika").setLevel(logging.WARNING)


def get_logger(name: str = "conveyor"):
    return structlog.get_logger(name)
