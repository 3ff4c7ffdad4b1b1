"""structlog configuration: JSON off a TTY, readable on one; no local variables in
tracebacks; passwords in URLs and customer fields redacted; the logger's name in every line.
The standard library's loggers (psycopg_pool, pika, ...) go through the same processors and
renderer, so JSON mode emits JSON only. ``NO_COLOR`` (https://no-color.org) turns colours
off in console mode. Configure once at start-up."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO, cast

import structlog
from structlog.typing import Processor

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


class _NamedWriteLogger(structlog.WriteLogger):
    """structlog's plain writer with the name it was asked for (``add_logger_name`` reads it)."""

    def __init__(self, file: TextIO, name: str) -> None:
        super().__init__(file)
        self.name = name


def _named_logger(*args: Any) -> _NamedWriteLogger:
    return _NamedWriteLogger(cast(TextIO, _CurrentStderr()), str(args[0]) if args else "conveyor")


def configure(*, log_format: str = "auto", level: str = "INFO") -> None:
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    colors = not use_json and not os.environ.get("NO_COLOR") and sys.stderr.isatty()
    renderer = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=colors, exception_formatter=structlog.dev.plain_traceback)
    )
    exception_processor = (
        # dict tracebacks without locals: locals would leak message bodies and DSNs
        structlog.processors.ExceptionRenderer(structlog.tracebacks.ExceptionDictTransformer(show_locals=False))
        if use_json else structlog.processors.format_exc_info
    )
    shared: list[Processor] = [structlog.processors.add_log_level,
                               structlog.processors.TimeStamper(fmt="iso", utc=True)]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            *shared,
            structlog.stdlib.add_logger_name,
            exception_processor,
            _redact,  # after the exception is rendered, so its text is redacted too
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level)),
        logger_factory=_named_logger,
        cache_logger_on_first_use=True,
    )
    _route_stdlib(level, shared + [structlog.stdlib.add_logger_name, exception_processor, _redact], renderer)


_stdlib_handler: list[logging.Handler] = []  # the root handler configure() installed, if any


def _route_stdlib(level: str, pre_chain: list[Processor], renderer: Any) -> None:
    """One handler on the root logger renders every standard-library record like ours."""
    handler = logging.StreamHandler(cast(TextIO, _CurrentStderr()))
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=pre_chain,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer]))
    root = logging.getLogger()
    if _stdlib_handler:  # a reconfigure replaces ours, and leaves any other handler alone
        root.removeHandler(_stdlib_handler.pop())
    _stdlib_handler.append(handler)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level))
    logging.getLogger("pika").setLevel(logging.WARNING)  # pika's INFO is a line per frame event


def get_logger(name: str = "conveyor"):
    """A structlog logger whose lines carry ``logger=name`` (resolved at first use, so a
    module-level logger follows the configuration made later at start-up)."""
    return structlog.get_logger(name)
