"""Unit of work: one database transaction (or savepoint) and the repositories bound to it.

Handlers receive a ``UnitOfWork`` and never see a connection; whoever opens it decides
when it commits.
"""

from __future__ import annotations

import psycopg

from conveyor.db.fulfilment import FulfilmentRepository
from conveyor.db.inbox import Inbox
from conveyor.db.intake import IntakeRepository
from conveyor.db.orders import OrderRepository, OrderStateRepository
from conveyor.db.outbox import Outbox
from conveyor.db.reservations import ReservationRepository
from conveyor.db.stock import StockRepository


class UnitOfWork:
    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.inbox = Inbox(conn)
        self.stock = StockRepository(conn)
        self.intake = IntakeRepository(conn)
        self.orders = OrderRepository(conn)
        self.outbox = Outbox(conn)
        self.order_states = OrderStateRepository(conn)
        self.reservations = ReservationRepository(conn)
        self.fulfilment = FulfilmentRepository(conn)
