"""Quick probes: does a PostgreSQL or RabbitMQ URL answer, does a Docker engine answer."""

from __future__ import annotations

import os

import pika
import psycopg

from conveyor.devservices.base import PROBE_TIMEOUT_S, _first_line


def _postgres_problem(url: str) -> str | None:
    try:
        with psycopg.connect(url, connect_timeout=int(PROBE_TIMEOUT_S), autocommit=True) as conn:
            row = conn.execute(
                "SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
    except psycopg.Error as exc:
        return f"is not usable ({_first_line(exc)})"
    if not (row and row[0]):
        return "answered, but its role may not CREATE DATABASE"
    return None


def _amqp_problem(url: str) -> str | None:
    try:
        connection = pika.BlockingConnection(_pika_params(url, timeout=PROBE_TIMEOUT_S))
    except Exception as exc:  # pika raises many unrelated types for "no broker"
        return f"is not usable ({type(exc).__name__}: {_first_line(exc)})"
    connection.close()
    return None


def _pika_params(url: str, *, timeout: float) -> pika.URLParameters:
    params = pika.URLParameters(url)
    params.connection_attempts = 1
    params.socket_timeout = timeout
    params.stack_timeout = timeout + 1
    params.blocked_connection_timeout = timeout + 1
    return params


def _docker_unavailable() -> str | None:
    """None if a Docker engine answers, else why not (fast when there is no socket)."""
    host = os.environ.get("DOCKER_HOST")
    if not host:
        if not os.path.exists("/var/run/docker.sock"):
            return "no Docker engine (DOCKER_HOST unset, /var/run/docker.sock missing)"
        host = "unix:///var/run/docker.sock"
    try:
        import docker  # testcontainers' own dependency
        import testcontainers  # noqa: F401

        docker.DockerClient(base_url=host, timeout=int(PROBE_TIMEOUT_S)).ping()
    except ImportError:
        return "the docker/testcontainers packages are not installed"
    except Exception as exc:
        return f"Docker engine at {host} did not answer ({type(exc).__name__})"
    return None
