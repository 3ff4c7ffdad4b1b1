"""Finding the servers: the environment's URLs if they answer, else testcontainers where Docker
answers, else throwaway servers from the local binaries."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from urllib.parse import quote

from conveyor.devservices.base import AMQP_URL_ENV, DATABASE_URL_ENV, TEMP_PREFIX, Log, Services, redact
from conveyor.devservices.postgres import _throwaway_postgres
from conveyor.devservices.probes import _amqp_problem, _docker_unavailable, _postgres_problem
from conveyor.devservices.processes import _sweep_stale_temp_dirs, _wait_until
from conveyor.devservices.rabbitmq import _throwaway_rabbitmq
from conveyor.devservices.vhosts import _default_management_url, _management_answers, _system_rabbitmqctl


@contextmanager
def provide_services(
    *, prefer_env: bool = True, use_testcontainers: bool = True, log: Log = print
) -> Iterator[Services]:
    """Yield running servers from the first source that works; stop what was started."""
    skipped: list[str] = []
    if prefer_env:
        services, why = environment_services()
        if services is not None:
            log(_summary(services, why, skipped))
            yield services
            return
        skipped.append(f"environment: {why}")
    else:
        skipped.append("environment: prefer_env=False")

    why_not_docker = _docker_unavailable() if use_testcontainers else "use_testcontainers=False"
    if why_not_docker is None:
        with _testcontainers_services() as (services, detail):
            log(_summary(services, detail, skipped))
            yield services
        return
    skipped.append(f"testcontainers: {why_not_docker}")

    with _local_services() as (services, detail):
        log(_summary(services, detail, skipped))
        yield services


def _summary(services: Services, detail: str, skipped: list[str]) -> str:
    admin = (
        "management API" if services.management_url
        else "rabbitmqctl" if services.rabbitmqctl
        else "docker exec" if services.container_exec
        else "none"
    )
    why = f"; skipped {'; '.join(skipped)}" if skipped else ""
    return f"devservices: using {services.source} ({detail}; vhosts via {admin}){why}"


def environment_services() -> tuple[Services | None, str]:
    """Services from CONVEYOR_DATABASE_URL/CONVEYOR_AMQP_URL if both answer, else why not."""
    db_url, amqp_url = os.environ.get(DATABASE_URL_ENV), os.environ.get(AMQP_URL_ENV)
    missing = [name for name, value in ((DATABASE_URL_ENV, db_url), (AMQP_URL_ENV, amqp_url)) if not value]
    if missing or db_url is None or amqp_url is None:
        return None, f"{' and '.join(missing)} not set"
    problem = _postgres_problem(db_url)
    if problem:
        return None, f"{DATABASE_URL_ENV}={redact(db_url)} {problem}"
    problem = _amqp_problem(amqp_url)
    if problem:
        return None, f"{AMQP_URL_ENV}={redact(amqp_url)} {problem}"
    # The broker's management API: CONVEYOR_MANAGEMENT_URL when set (another broker may answer on
    # the default port of the same host), else the default port.
    given = os.environ.get("CONVEYOR_MANAGEMENT_URL", "").strip().rstrip("/")
    api = (given.removesuffix("/api") + "/api") if given else _default_management_url(amqp_url)
    management = api if _management_answers(api, amqp_url, timeout=1.0) else None
    ctl = _system_rabbitmqctl(amqp_url) if management is None else None
    detail = f"{redact(db_url)}, {redact(amqp_url)} answered"
    return Services(db_url, amqp_url, "environment", management_url=management, rabbitmqctl=ctl), detail


@contextmanager
def _testcontainers_services() -> Iterator[tuple[Services, str]]:
    try:
        from testcontainers.community.postgres import PostgresContainer
        from testcontainers.community.rabbitmq import RabbitMqContainer
    except ImportError:  # releases before the "community" move
        from testcontainers.postgres import PostgresContainer
        from testcontainers.rabbitmq import RabbitMqContainer

    started = time.monotonic()
    with ExitStack() as stack:
        postgres = stack.enter_context(PostgresContainer("postgres:15", driver=None))
        rabbit = stack.enter_context(RabbitMqContainer("rabbitmq:3.10-management").with_exposed_ports(15672))
        host = rabbit.get_container_host_ip()
        amqp_url = (
            f"amqp://{quote(rabbit.username, safe='')}:{quote(rabbit.password, safe='')}"
            f"@{host}:{rabbit.get_exposed_port(rabbit.port)}/%2F"
        )
        api = f"http://{host}:{rabbit.get_exposed_port(15672)}/api"
        management = api if _wait_until(lambda: _management_answers(api, amqp_url, timeout=1), 30) else None

        def container_exec(argv: list[str]) -> tuple[int, str]:
            result = rabbit.exec(argv)
            return int(result.exit_code or 0), result.output.decode(errors="replace")

        services = Services(
            postgres.get_connection_url(), amqp_url, "testcontainers",
            management_url=management, container_exec=container_exec,
        )
        yield services, f"containers ready in {time.monotonic() - started:.1f} s"


@contextmanager
def _local_services() -> Iterator[tuple[Services, str]]:
    """Throwaway PostgreSQL + RabbitMQ; RabbitMQ boots while PostgreSQL is set up."""
    _sweep_stale_temp_dirs()
    base = tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-")
    os.chmod(base, 0o711)  # the unprivileged postgres user must reach its subdirectory
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, base, ignore_errors=True)
        started = time.monotonic()
        rabbit_ready = stack.enter_context(_throwaway_rabbitmq(os.path.join(base, "rabbitmq")))
        database_url, pg_detail = stack.enter_context(_throwaway_postgres(os.path.join(base, "postgres")))
        rabbit, rabbit_detail = rabbit_ready()
        detail = f"{pg_detail}; {rabbit_detail}; both ready in {time.monotonic() - started:.1f} s, in {base}"
        yield dataclasses.replace(rabbit, database_url=database_url), detail
