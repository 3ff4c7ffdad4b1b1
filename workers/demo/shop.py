"""The simulated shop: a seeded catalogue and a stream of ``order.created`` messages,
published with confirms."""

from __future__ import annotations

import json
import random
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

import pika

from conveyor.schemas.names import ORDERS_EXCHANGE

ORDER_PROPERTIES = dict(content_type="application/json", delivery_mode=2, type="order.created")


@dataclass(frozen=True)
class Catalogue:
    skus: list[str]
    hot_skus: list[str]
    stock: int
    price_cents: dict[str, int]


def make_catalogue(rng: random.Random, *, skus: int, hot: int, stock: int) -> Catalogue:
    names = [f"SKU-{i:04d}" for i in range(skus)]
    return Catalogue(names, names[:hot], stock, {name: rng.randint(199, 9999) for name in names})


def make_order(rng: random.Random, catalogue: Catalogue, *, hot_share: float) -> dict:
    lines = rng.choice((1, 1, 2, 3))
    pool = catalogue.hot_skus if catalogue.hot_skus and rng.random() < hot_share else catalogue.skus
    skus = rng.sample(pool, k=min(lines, len(pool)))
    customer = f"customer-{rng.randint(1, 5000)}"
    return {
        "order_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "customer_id": customer,
        # Synthetic personal data: the workers seal it (docs/privacy.md), events never carry it.
        "customer": {"email": f"{customer}@example.test", "name": f"Demo {customer.title()}",
                     "shipping_address": {"line1": f"{rng.randint(1, 200)} Demo Street", "city": "Testville",
                                          "country": rng.choice(["DE", "FR", "NL", "GB"])}},
        "currency": "EUR",
        "items": [{"sku": sku, "quantity": rng.randint(1, 3),
                   "unit_price": f"{catalogue.price_cents[sku] / 100:.2f}"} for sku in skus],
        "placed_at": datetime.now(timezone.utc).isoformat(),
    }


def publish_orders(channel, orders: list[dict], *, rate: float, on_published) -> dict[str, float]:
    """Publish every order (confirmed, mandatory); returns order_id → publish time."""
    sent_at: dict[str, float] = {}
    started = time.monotonic()
    for index, order in enumerate(orders):
        if rate > 0:
            time.sleep(max(0.0, started + index / rate - time.monotonic()))
        properties = pika.BasicProperties(message_id=str(uuid.uuid4()), **ORDER_PROPERTIES)
        sent_at[order["order_id"]] = time.monotonic()
        channel.basic_publish(ORDERS_EXCHANGE, "order.created", json.dumps(order).encode(),
                              properties=properties, mandatory=True)
        on_published()
    return sent_at


def order_total(order: dict) -> str:
    return str(sum(Decimal(i["unit_price"]) * i["quantity"] for i in order["items"]))
