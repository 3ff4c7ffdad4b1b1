"""Wiring of the HTTP endpoint for one process, or for the parent of a group."""

from __future__ import annotations

import subprocess

from prometheus_client import REGISTRY, generate_latest

from conveyor.workers.config import Settings
from conveyor.workers.logging import get_logger
from conveyor.workers.observability.group import GroupDirectory
from conveyor.workers.observability.health import Health
from conveyor.workers.observability.http import Endpoints, ProbeServer

log = get_logger("conveyor.http")


def serve_process(settings: Settings, health: Health) -> ProbeServer | None:
    """The endpoint of a single `conveyor run` process; None when ``CONVEYOR_HTTP_PORT`` is unset."""
    if settings.http_port is None:
        return None
    endpoints = Endpoints(metrics=lambda: generate_latest(REGISTRY), liveness=health.liveness,
                          readiness=health.readiness)
    return _start(endpoints, settings)


def serve_group(settings: Settings, group: GroupDirectory, children: list[subprocess.Popen]) -> ProbeServer:
    """The parent's endpoint: the children's metrics summed, their verdicts combined."""
    endpoints = Endpoints(metrics=group.metrics, liveness=lambda: group.liveness(children),
                          readiness=lambda: group.readiness(children))
    return _start(endpoints, settings)


def _start(endpoints: Endpoints, settings: Settings) -> ProbeServer:
    assert settings.http_port is not None  # callers checked
    server = ProbeServer(endpoints, host=settings.http_host, port=settings.http_port).start()
    log.info("http_listening", host=settings.http_host, port=server.port,
             paths=["/metrics", "/healthz", "/readyz"])
    return server
