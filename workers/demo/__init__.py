"""``conveyor demo``: the whole system on one machine, with a simulated shop and a summary.

It finds PostgreSQL and RabbitMQ (CONVEYOR_* URLs if they answer, else containers, else
throwaway local servers), gives the demo its own database and vhost, starts real worker
processes, publishes orders with a progress bar while simulated payment, shipping and
customer behaviour answers Conveyor's events, waits until every order is in a final state
and prints the count per state, oversold (must be 0), a stock reconciliation, throughput
and latency percentiles.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from contextlib import ExitStack

import pika

from conveyor.workers.demo import report
from conveyor.workers.demo.environment import DemoEnvironment
from conveyor.workers.demo.progress import Progress
from conveyor.workers.demo.providers import Behaviour, World
from conveyor.workers.demo.shop import make_catalogue, make_order, order_total, publish_orders


def run_demo(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    catalogue = make_catalogue(rng, skus=args.skus, hot=min(args.hot_skus, args.skus), stock=args.stock)
    orders = [make_order(rng, catalogue, hot_share=args.hot_share) for _ in range(args.orders)]
    behaviour = Behaviour(args.payment_failures, args.cancellations, args.abandoned)
    with ExitStack() as stack:
        env = stack.enter_context(DemoEnvironment.open(args))
        env.seed(catalogue)
        world = World(env.amqp_url, behaviour, rng, {o["order_id"]: order_total(o) for o in orders})
        world.start()
        stack.callback(world.stop.set)
        env.start_workers(processes=args.processes, reservation_ttl=args.reservation_ttl)
        _say(f"publishing {len(orders)} orders to exchange 'orders'")
        sent_at, publish_s = _publish(env.amqp_url, orders, rate=args.rate)
        _wait(world.decided_at, len(orders), "decided", timeout=args.timeout)
        _wait(world.final, len(orders), "final", timeout=args.timeout + args.reservation_ttl)
        summary = report.summarise(env, orders, catalogue, sent_at, world, publish_seconds=publish_s)
        env.stop_workers()
    print(json.dumps(summary, indent=2) if args.json else report.render(summary))
    return 0 if summary["ok"] else 1


def _publish(amqp_url: str, orders: list[dict], *, rate: float) -> tuple[dict[str, float], float]:
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        progress = Progress("published", len(orders))
        started = time.monotonic()
        sent_at = publish_orders(channel, orders, rate=rate, on_published=progress.advance)
        progress.close()
        return sent_at, time.monotonic() - started
    finally:
        connection.close()


def _wait(seen: dict, total: int, label: str, *, timeout: float) -> None:
    progress = Progress(label, total)
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        done = len(seen)
        progress.advance(done - progress.done)
        if done >= total:
            break
        time.sleep(0.2)
    progress.close()


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
