"""What every part of the dev services shares: the ``Services`` record (where the servers are
and how to administer them), the error, the settings' names and timeouts, URL redaction."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

Source = Literal["environment", "testcontainers", "local-binaries"]


ExecFn = Callable[[list[str]], tuple[int, str]]


Log = Callable[[str], object]


DATABASE_URL_ENV = "CONVEYOR_DATABASE_URL"


AMQP_URL_ENV = "CONVEYOR_AMQP_URL"


PROBE_TIMEOUT_S = 2.0


START_TIMEOUT_S = 60.0


TEMP_PREFIX = "conveyor-devservices-"


_NAME_PREFIX = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")


_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1", ""}


class DevServicesError(RuntimeError):
    """A server could not be found, started, or administered."""


@dataclass(frozen=True)
class Services:
    """Where the servers are and how to administer them.

    ``database_url`` points at a maintenance database as a role with CREATEDB;
    ``amqp_url`` at the default vhost as an administrator. At most one of the vhost
    administration routes is used, in this order: ``management_url`` (HTTP API base,
    ``.../api``), ``rabbitmqctl`` (argv prefix, e.g. ``(path, "-n", node)``, run with
    ``rabbitmqctl_env`` added to the environment), ``container_exec``.
    """

    database_url: str
    amqp_url: str
    source: Source
    management_url: str | None = None
    rabbitmqctl: tuple[str, ...] | None = None
    rabbitmqctl_env: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    container_exec: ExecFn | None = field(default=None, compare=False, repr=False)

    def __repr__(self) -> str:
        return (
            f"Services(source={self.source!r}, database_url={redact(self.database_url)!r}, "
            f"amqp_url={redact(self.amqp_url)!r}, management_url={self.management_url!r}, "
            f"rabbitmqctl={self.rabbitmqctl!r})"
        )


def redact(url: str) -> str:
    """The URL with its password replaced by ***."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]
