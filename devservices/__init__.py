"""PostgreSQL and RabbitMQ for the demo, the benchmark and the test suite.

This module owns *finding or starting* the two servers and *isolating* each user of
them; it owns no schema (``conveyor.db.migrate``) and no broker topology. Sources, in order:

1. ``CONVEYOR_DATABASE_URL`` + ``CONVEYOR_AMQP_URL`` from the environment, used only if
   both answer a quick probe (2 s timeouts).
2. testcontainers (``postgres:15``, ``rabbitmq:3.10-management``), only where a Docker
   engine answers; testcontainers is imported lazily.
3. Throwaway servers started from the installed binaries, on free loopback ports, in a
   temp directory that is deleted at the end. They die with this process (parent-death
   signal) if it is killed before it can clean up; stale temp directories of dead
   processes are swept at the next start.

Isolation: :func:`fresh_database` (optionally cloned from a template with
``CREATE DATABASE ... TEMPLATE``, ~50-150 ms here) and :func:`fresh_vhost`. A vhost is
created and deleted through the management HTTP API when one answers (~40 ms in all),
else ``rabbitmqctl`` (an Erlang CLI boot per call, ~0.4 s; three calls, ~1.3 s per
vhost), else ``docker exec rabbitmqctl`` in the testcontainer.

Never touches the machine's own servers beyond creating and dropping the uniquely
named databases and vhosts it hands out.

One job per module: ``base`` (the ``Services`` record), ``resolve`` (finding the servers),
``databases`` and ``vhosts`` (isolation), ``postgres`` and ``rabbitmq`` (servers of our own),
``processes`` (child-process plumbing), ``probes``. The worker runtime never imports this
package; the demo, the benchmarks and the tests do.
"""

from conveyor.devservices.base import (
    AMQP_URL_ENV,
    DATABASE_URL_ENV,
    PROBE_TIMEOUT_S,
    START_TIMEOUT_S,
    TEMP_PREFIX,
    DevServicesError,
    ExecFn,
    Log,
    Services,
    Source,
    redact,
)
from conveyor.devservices.databases import (
    create_database,
    create_database_from_template,
    database_name,
    database_url_for,
    drop_database,
    fresh_database,
    seal_template,
)
from conveyor.devservices.postgres import RestartablePostgres, postgres_bindir
from conveyor.devservices.processes import _free_ports
from conveyor.devservices.rabbitmq import RestartableRabbitMQ, rabbitmq_bindir
from conveyor.devservices.resolve import environment_services, provide_services
from conveyor.devservices.vhosts import _system_rabbitmqctl, amqp_url_for_vhost, create_vhost, delete_vhost, fresh_vhost

__all__ = [
    "AMQP_URL_ENV",
    "DATABASE_URL_ENV",
    "DevServicesError",
    "ExecFn",
    "Log",
    "PROBE_TIMEOUT_S",
    "RestartablePostgres",
    "RestartableRabbitMQ",
    "START_TIMEOUT_S",
    "Services",
    "Source",
    "TEMP_PREFIX",
    "_free_ports",
    "_system_rabbitmqctl",
    "amqp_url_for_vhost",
    "create_database",
    "create_database_from_template",
    "create_vhost",
    "database_name",
    "database_url_for",
    "delete_vhost",
    "drop_database",
    "environment_services",
    "fresh_database",
    "fresh_vhost",
    "postgres_bindir",
    "provide_services",
    "rabbitmq_bindir",
    "redact",
    "seal_template",
]
