"""A pytest plugin: ``conveyor_service``, a real Conveyor for a shop's or partner's own tests.

    pytest -p conveyor.workers.kit.pytest_plugin

Each test gets a freshly migrated database (a clone of one migrated per session) and a fresh
vhost with Conveyor's topology, on the servers ``conveyor.devservices`` finds
(``CONVEYOR_DATABASE_URL``/``CONVEYOR_AMQP_URL`` if they answer, else testcontainers, else
throwaway servers from local binaries), and every worker running in-process (threads,
as ``conveyor run`` would start them) until the test ends. The fixture yields a
``ConveyorService``: ``amqp_url``, ``database_url``, ``settings``, a connected ``publisher``,
``set_stock(...)``, ``stock(...)``, ``order(...)`` and ``wait_for_order(order_id)``.

Test tooling like the demo, so it is the one part of the workers allowed to import
``conveyor.devservices`` (docs/architecture.md).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from conveyor import devservices
from conveyor.workers.config import Settings, load_settings
from conveyor.workers.kit.publisher import ConveyorPublisher

SETTLED = ("RESERVED", "REJECTED", "PAID", "CANCELLED", "SHIPPED", "DELIVERED", "EXPIRED")


@dataclass
class ConveyorService:
    settings: Settings
    publisher: ConveyorPublisher
    supervisor: Any = field(repr=False)

    @property
    def amqp_url(self) -> str:
        return self.settings.amqp_url

    @property
    def database_url(self) -> str:
        return self.settings.database_url

    def set_stock(self, sku: str, on_hand: int, *, tenant: str | None = None) -> None:
        from conveyor.db.connection import connect
        from conveyor.db.stock import StockRepository

        with connect(self.database_url) as conn, conn.transaction():
            StockRepository(conn).set_on_hand(tenant or self.settings.default_tenant, sku, on_hand)

    def stock(self, sku: str, *, tenant: str | None = None) -> dict | None:
        from conveyor.db import views
        from conveyor.db.connection import connect

        with connect(self.database_url) as conn:
            return views.stock(conn, tenant or self.settings.default_tenant, sku)

    def order(self, order_id: uuid.UUID | str) -> dict | None:
        """``conveyor order show``'s document (status, lines, reservations), or None."""
        from conveyor.db import views
        from conveyor.db.connection import connect

        with connect(self.database_url) as conn:
            return views.order(conn, uuid.UUID(str(order_id)))

    def wait_for_order(self, order_id: uuid.UUID | str, *, status: str | tuple[str, ...] = SETTLED,
                       timeout: float = 20.0) -> dict:
        """The order once its status is ``status`` (default: any settled one); AssertionError
        after ``timeout`` seconds (a refused message never makes an order: check the DLQ)."""
        wanted = (status,) if isinstance(status, str) else status
        deadline = time.monotonic() + timeout
        while True:
            shown = self.order(order_id)
            if shown is not None and shown["status"] in wanted:
                return shown
            if time.monotonic() > deadline:
                seen = shown["status"] if shown else "no order"
                raise AssertionError(f"order {order_id} not {'/'.join(wanted)} after {timeout}s ({seen})")
            time.sleep(0.05)


@pytest.fixture(scope="session")
def conveyor_devservices() -> Iterator[devservices.Services]:
    """The servers, found or started once per session."""
    with devservices.provide_services(log=lambda line: None) as found:
        yield found


@pytest.fixture(scope="session")
def conveyor_migrated_template(conveyor_devservices: devservices.Services) -> Iterator[str]:
    from conveyor.db.migrate import migrate

    with devservices.fresh_database(conveyor_devservices, prefix="conveyor_kit_template") as url:
        migrate(url)
        name = devservices.database_name(url)
        devservices.seal_template(conveyor_devservices, name)
        yield name


@pytest.fixture
def conveyor_service(conveyor_devservices: devservices.Services,
                     conveyor_migrated_template: str) -> Iterator[ConveyorService]:
    """A running Conveyor on a fresh database and vhost of this test's own."""
    from conveyor.workers.bootstrap import build_supervisor, declare_topology
    from conveyor.workers.roles import ALL

    with devservices.fresh_database(conveyor_devservices, template=conveyor_migrated_template,
                                    prefix="conveyor_kit") as database_url, \
            devservices.fresh_vhost(conveyor_devservices, prefix="conveyor-kit") as amqp_url:
        settings = load_settings(database_url=database_url, amqp_url=amqp_url, retry_delays=(1,),
                                 max_attempts=3, log_format="json", log_level="WARNING")
        declare_topology(settings)
        supervisor = build_supervisor(list(ALL), settings)
        try:
            _wait_connected(supervisor)
            with ConveyorPublisher(amqp_url, settings=settings, name="conveyor-kit-fixture") as publisher:
                yield ConveyorService(settings, publisher, supervisor)
        finally:
            supervisor.stop.set()
            supervisor.wait()
            supervisor.pool.close()


def _wait_connected(supervisor: Any, *, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.consumer.generation > 0 for p in supervisor.processors):
        if time.monotonic() > deadline:
            raise RuntimeError(f"Conveyor's consumers did not connect within {timeout}s")
        time.sleep(0.05)
