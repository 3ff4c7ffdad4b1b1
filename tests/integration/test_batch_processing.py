"""The order worker's set-based batch path against a real PostgreSQL, driven through the
processor without a broker: the same decisions as one message at a time, a failing message
isolated by the fallback, and the one-statement lock + inbox claim really holding the locks."""

from __future__ import annotations

import random

import psycopg

from conveyor.db.connection import connect
from conveyor.db.locks import stock_lock_key
from conveyor.db.uow import PostgresUnitOfWork
from tests.support.workers import created_delivery, order_body, order_processor, scalar, set_stock


def decisions(database_url: str) -> dict[str, str]:
    with psycopg.connect(database_url) as conn:
        return {str(o): s for o, s in conn.execute("SELECT order_id, status FROM orders")}


def levels(database_url: str) -> dict[str, tuple[int, int]]:
    with psycopg.connect(database_url) as conn:
        return {sku: (on_hand, reserved) for sku, on_hand, reserved in
                conn.execute("SELECT sku, on_hand, reserved FROM stock_levels")}


def test_a_batch_decides_exactly_as_one_message_at_a_time(database_url, services, migrated_template):
    from conveyor import devservices
    # Given scarce stock and 60 orders competing for it (some ask twice for the same SKU,
    # some for a SKU nobody stocks), and a second database with the same stock
    rng = random.Random(7)
    skus = ["A", "B", "C", "D"]
    bodies = [order_body(*[(rng.choice(skus + ["NONE"] * (i % 9 == 0)), rng.randint(1, 3))
                           for _ in range(rng.randint(1, 3))]) for i in range(60)]
    with devservices.fresh_database(services, template=migrated_template) as one_by_one_url:
        for url in (database_url, one_by_one_url):
            for sku, units in zip(skus, (9, 14, 5, 30)):
                set_stock(url, sku, units)

        # When one processor takes them in batches of 20 and the other one at a time
        batched, single = order_processor(database_url), order_processor(one_by_one_url)
        for start in range(0, 60, 20):
            batched.process([created_delivery(start + i, b) for i, b in enumerate(bodies[start:start + 20])])
        for i, body in enumerate(bodies):
            single.process([created_delivery(i, body)])
        batched.db.close()
        single.db.close()

        # Then every order got the same decision and the stock ended the same, without a fallback
        assert decisions(database_url) == decisions(one_by_one_url)
        assert levels(database_url) == levels(one_by_one_url)
        assert set(decisions(database_url).values()) == {"RESERVED", "REJECTED"}
        assert batched.stats.batch_fallbacks == 0
        assert batched.stats.outcomes == single.stats.outcomes
        for url in (database_url, one_by_one_url):
            assert scalar(url, "SELECT count(*) FROM outbox WHERE exchange = 'order-events'") == 60
            assert scalar(url, "SELECT count(*) FROM inbox") == 60


def test_a_message_the_database_refuses_fails_alone_and_the_rest_of_the_batch_commits(database_url):
    # Given three orders, the middle one refused by the database at insert time (a constraint
    # the code does not know of: only the database notices)
    set_stock(database_url, "A", 10)
    bodies = [order_body(("A", 1)) for _ in range(3)]
    with psycopg.connect(database_url) as conn:
        conn.execute(f"""CREATE FUNCTION test_refuse_order() RETURNS trigger LANGUAGE plpgsql AS $$
                         BEGIN
                             IF NEW.order_id = '{bodies[1]["order_id"]}' THEN
                                 RAISE EXCEPTION 'planted refusal' USING ERRCODE = 'check_violation';
                             END IF;
                             RETURN NEW;
                         END $$""")
        conn.execute("CREATE TRIGGER test_refuse_order BEFORE INSERT ON orders"
                     " FOR EACH ROW EXECUTE FUNCTION test_refuse_order()")

    # When they come as one batch
    processor = order_processor(database_url)
    processor.process([created_delivery(i, b) for i, b in enumerate(bodies)])
    processor.db.close()

    # Then the batch fell back, the culprit goes to the DLQ with the reason, the others are reserved
    assert processor.stats.batch_fallbacks == 1
    assert processor.stats.outcomes == {"reserved": 2, "dead_letter": 1}
    culprit = [s for s in processor.consumer.settled if s.copy_to_queue is not None]
    assert [s.delivery.delivery_tag for s in culprit] == [1]
    assert culprit[0].copy_to_queue == "conveyor.orders.dlq"
    assert levels(database_url)["A"] == (10, 2)
    assert scalar(database_url, "SELECT count(*) FROM inbox") == 2  # the culprit's claim rolled back


def test_the_inbox_claim_takes_the_batchs_stock_locks_first(database_url):
    # Given a transaction that claimed two message ids after locking (default, A) and (default, B)
    with connect(database_url) as conn, connect(database_url) as other:  # both autocommit
        with conn.transaction():
            fresh = PostgresUnitOfWork(conn).inbox.claim_many(["m1", "m2"], handler="orders",
                                                      after_locking=[("default", "B"), ("default", "A")])
            # Then while it is open, nobody else gets those locks; another SKU's is free
            taken = [other.execute("SELECT pg_try_advisory_xact_lock(%s)", (stock_lock_key("default", s),))
                     .fetchone()[0] for s in ("A", "B", "C")]
        # and once it committed they are free again
        after = other.execute("SELECT pg_try_advisory_lock(%s)", (stock_lock_key("default", "A"),)).fetchone()[0]
        other.execute("SELECT pg_advisory_unlock_all()")
    assert fresh == {"m1", "m2"}
    assert taken == [False, False, True]
    assert after is True
