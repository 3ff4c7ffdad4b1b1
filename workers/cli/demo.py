"""``conveyor demo``: the whole system on one machine with a simulated shop."""

from __future__ import annotations

import argparse

from conveyor.workers.cli.base import command


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="seed a catalogue, run the workers, simulate a shop, print a summary",
                       description="Runs the whole system against the configured (or discovered) "
                                   "PostgreSQL and RabbitMQ and prints what happened.")
    _demo_arguments(p)


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--orders", type=int, default=3000, help="orders to publish (default 3000)")
    parser.add_argument("--skus", type=int, default=200, help="catalogue size (default 200)")
    parser.add_argument("--hot-skus", type=int, default=3, help="SKUs most orders want (default 3)")
    parser.add_argument("--hot-share", type=float, default=0.3,
                        help="share of orders on the hot SKUs (default 0.3)")
    parser.add_argument("--stock", type=int, default=40, help="units on hand per SKU (default 40)")
    parser.add_argument("--processes", type=int, default=2, help="order-worker processes (default 2)")
    parser.add_argument("--rate", type=float, default=0, help="orders/s to offer (default 0: flat out)")
    parser.add_argument("--payment-failures", type=float, default=0.08,
                        help="share of reserved orders whose payment fails (default 0.08)")
    parser.add_argument("--cancellations", type=float, default=0.05,
                        help="share of reserved orders the customer cancels (default 0.05)")
    parser.add_argument("--abandoned", type=float, default=0.04,
                        help="share of reserved orders nobody pays; they expire (default 0.04)")
    parser.add_argument("--reservation-ttl", type=float, default=5.0,
                        help="seconds before an unpaid reservation expires in the demo (default 5)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument("--use-env", action="store_true",
                        help="use CONVEYOR_DATABASE_URL/AMQP_URL as they are (no fresh database/vhost)")
    parser.add_argument("--keep", action="store_true", help="keep the demo database and vhost afterwards")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for decisions")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


@command("demo")
def demo(args: argparse.Namespace) -> int:
    from conveyor.workers.demo import run_demo

    return run_demo(args)

