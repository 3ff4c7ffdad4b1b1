"""``conveyor topology declare``: every exchange and queue."""

from __future__ import annotations

import argparse

from conveyor.workers.cli.base import EXIT_OK, command


def add_parsers(sub: argparse._SubParsersAction) -> None:
    topo = sub.add_parser("topology", help="RabbitMQ exchanges and queues")
    topo_sub = topo.add_subparsers(dest="topology_command", required=True, metavar="ACTION")
    topo_sub.add_parser("declare", help="declare every exchange and queue (idempotent)")


@command("topology declare")
def topology_declare(args: argparse.Namespace) -> int:
    from conveyor.workers.bootstrap import WORKERS, declare_topology

    declare_topology(args.settings)
    print(f"declared exchanges and queues for {', '.join(WORKERS)}")
    return EXIT_OK

