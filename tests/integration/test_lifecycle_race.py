"""The expirer and the payment worker racing for the same orders on a real PostgreSQL:
exactly one of them wins each order, and stock is released at most once."""

from __future__ import annotations

import threading
import time
import uuid

import psycopg

from conveyor.db.connection import connect, make_pool
from conveyor.db.locks import lock_stock
from conveyor.db.uow import PostgresUnitOfWork
from conveyor.schemas.lifecycle import PaymentAuthorized
from conveyor.workers.handlers import payments as payment_worker
from conveyor.workers.runtime.spec import HandlerContext
from conveyor.workers.services.expirer import Expirer
from tests.support.lifecycle import reconcile
from tests.support.workers import order_body, run_order, set_stock, settings_for


def ctx() -> HandlerContext:
    return HandlerContext(message_id=str(uuid.uuid4()), routing_key="test", attempt=1, default_tenant="default")


def pay(database_url: str, body: dict) -> str:
    message = PaymentAuthorized(order_id=body["order_id"], payment_id=f"pay-{body['order_id']}",
                                amount="19.98", currency="EUR")
    with connect(database_url) as conn, conn.transaction():
        uow = PostgresUnitOfWork(conn)
        lock_stock(conn, uow.reservations.skus_of([message.order_id]))
        return payment_worker.handle_authorized(message, uow, ctx())


def test_expirer_and_payment_racing_on_the_same_orders_exactly_one_wins_each(database_url, amqp_url):
    # Given 80 reserved orders of 2 units each whose reservations are already due to expire
    set_stock(database_url, "A", 1000)
    bodies = [order_body(("A", 2)) for _ in range(80)]
    for body in bodies:
        assert run_order(database_url, body) == "reserved"
    time.sleep(0.3)
    settings = settings_for(database_url, amqp_url, reservation_ttl=0.2)
    pool = make_pool(database_url, size=2)
    expirer = Expirer(settings, pool, stop=threading.Event(), batch=10)
    outcomes: list[str] = []

    # When the expirer sweeps while payments arrive for every order
    sweeper = threading.Thread(target=lambda: [expirer.sweep() for _ in range(10)])
    # (payments newest first, the expirer oldest first: they meet in the middle)
    payer = threading.Thread(target=lambda: outcomes.extend(pay(database_url, b) for b in reversed(bodies)))
    sweeper.start(), payer.start()
    sweeper.join(), payer.join()
    pool.close()

    # Then every order is either PAID (payment won) or EXPIRED with the payment refused
    with psycopg.connect(database_url) as conn:
        status = dict(conn.execute("SELECT order_id::text, status FROM orders").fetchall())
        transitions = conn.execute("SELECT count(*), count(DISTINCT order_id) FROM order_transitions").fetchone()
        reserved = conn.execute("SELECT reserved FROM stock_levels WHERE sku = 'A'").fetchone()[0]
        releases = conn.execute("SELECT count(*) FROM stock_movements WHERE cause LIKE 'order.expired:%'"
                                ).fetchone()[0]
    paid = [b for b in bodies if status[b["order_id"]] == "PAID"]
    expired = [b for b in bodies if status[b["order_id"]] == "EXPIRED"]
    assert len(paid) + len(expired) == 80
    assert outcomes.count("paid") == len(paid) and outcomes.count("refused") == len(expired)
    assert expirer.expired == len(expired) == releases
    assert transitions == (80, 80)
    assert reserved == 2 * len(paid)
    assert reconcile(database_url) == {}
