"""The expirer: orders left RESERVED longer than ``CONVEYOR_RESERVATION_TTL`` become EXPIRED
and their stock is released. Safe with several copies running: each order is re-checked
under its locks (stock keys first, then the order row, like every other worker), so exactly
one of two racing expirers — or an expirer and a payment — wins."""

from __future__ import annotations

import threading
from uuid import UUID

from psycopg_pool import ConnectionPool

from conveyor.db.errors import is_transient
from conveyor.db.locks import lock_stock
from conveyor.db.uow import PostgresUnitOfWork
from conveyor.workers.config import Settings
from conveyor.workers.handlers import transitions
from conveyor.workers.logging import get_logger

log = get_logger("conveyor.expirer")


class Expirer:
    def __init__(self, settings: Settings, pool: ConnectionPool, *, stop: threading.Event,
                 batch: int = 200) -> None:
        self.ttl = settings.reservation_ttl
        self.pool = pool
        self.stop = stop
        self.batch = batch
        self.interval = min(5.0, max(0.2, self.ttl / 10))
        self.expired = 0

    def run(self) -> None:
        log.info("expirer_started", ttl_s=self.ttl, interval_s=self.interval)
        while not self.stop.wait(self.interval):
            try:
                while self.sweep() == self.batch and not self.stop.is_set():
                    pass
            except Exception as error:  # noqa: BLE001 - the next sweep tries again
                level = log.warning if is_transient(error) else log.error
                level("expirer_sweep_failed", error=f"{type(error).__name__}: {str(error)[:300]}")

    def sweep(self) -> int:
        """Expire what is due now; returns how many candidates were looked at."""
        with self.pool.connection() as conn:
            candidates = PostgresUnitOfWork(conn).order_states.expiry_candidates(
                older_than_seconds=self.ttl, limit=self.batch)
            for order_id in candidates:
                if self.stop.is_set():
                    break
                with conn.transaction():
                    self._expire(PostgresUnitOfWork(conn), order_id)
        return len(candidates)

    def _expire(self, uow: PostgresUnitOfWork, order_id: UUID) -> None:
        lock_stock(uow.conn, uow.reservations.skus_of([order_id]))
        outcome = transitions.expire(uow, order_id, reason=f"not paid within {self.ttl:g}s")
        if outcome is None:
            return  # a payment, a cancellation or another expirer got there first
        self.expired += 1
        log.info("order_expired", order_id=str(order_id), outcome=outcome)
